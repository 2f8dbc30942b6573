"""fastgan.info(): versions, devices, and which backends run here (and why not)."""
import importlib.metadata
import os
import platform

import torch

from fastgan import _backend, _ext
from fastgan._version import __version__


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def info():
    """A dict: versions, devices, the extension's build, and each backend's availability
    per device type as {"available": bool, "reason": str}."""
    devices = [f"cpu ({os.cpu_count()} cores)"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append(f"cuda:{i} {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)")
    device_types = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    backends = {
        name: {dt: dict(zip(("available", "reason"), _backend.status(name, dt))) for dt in device_types}
        for name in _backend.BACKENDS if name != "auto"
    }
    dali = _version("nvidia-dali-cuda130") or _version("nvidia-dali-cuda120")
    return {
        "fastgan": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "nvidia_dali": dali,
        "devices": devices,
        "extension": {"loaded": _ext.module() is not None, "error": _ext.error(), **_ext.build_info(),
                      **dict(zip(("cpu_isa", "cpu_isa_best"), _ext.cpu_isa()))},
        "default_backend": _backend.get_backend(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "backends": backends,
    }


def format_info(d):
    """The human-readable report printed by `fastgan info`."""
    ext = d["extension"]
    lines = [
        f"fastgan      {d['fastgan']}",
        f"python       {d['python']} ({d['platform']})",
        f"torch        {d['torch']}" + (f" (CUDA {d['torch_cuda']})" if d["torch_cuda"] else " (no CUDA)"),
        f"triton       {d['triton'] or 'not installed'}",
        f"nvidia-dali  {d['nvidia_dali'] or 'not installed'}",
        f"devices      {'; '.join(d['devices'])}",
        "extension    " + (f"fastgan._C ({'with' if ext.get('with_cuda') else 'without'} CUDA kernels, "
                           f"{ext.get('compiler')}; CPU loops: {ext.get('cpu_isa')}, best here "
                           f"{ext.get('cpu_isa_best')})" if ext["loaded"] else f"not loaded: {ext['error']}"),
        f"default      backend={d['default_backend']}, TRITON_INTERPRET={'1' if d['triton_interpret'] else 'unset'}",
        "backends",
    ]
    for name, per_device in d["backends"].items():
        for dt, s in per_device.items():
            mark = "yes" if s["available"] else "no "
            lines.append(f"  {name:<10} {dt:<5} {mark}  {s['reason']}")
    return "\n".join(lines)
