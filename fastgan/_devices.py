"""The device-name check shared by the trainer and the evaluator."""
import torch

# The device types fastgan's kernels, data loaders and memory budgets are written for.
DEVICE_TYPES = ("cpu", "cuda")


def check_device(want, who=""):
    """The torch.device `want` names ("cpu:0" is "cpu": there is one CPU device), or None for
    None (the caller then picks cuda where there is one, else cpu). ValueError (its message
    starts with `who`) naming `want` when it is not a device name, not a cpu or cuda device,
    another CPU index, or a CUDA device this machine lacks."""
    if want is None:
        return None
    try:
        device = torch.device(want)
    except (RuntimeError, TypeError):
        raise ValueError(f"{who}device {want!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"{who}device {want!r} is not supported: fastgan runs on cpu or cuda "
                         "(cuda, cuda:1, ...)")
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise ValueError(f"{who}device {want!r}: there is one CPU device; use --device cpu")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{who}device {want!r}: {why}; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{who}device {want!r}: this machine shows {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return device


def cpu_has_bf16():
    """Whether this CPU computes bfloat16 in hardware: AVX512-BF16 or AMX, by torch's own
    CPUID checks (oneDNN's _is_mkldnn_bf16_supported also says yes on AVX-512 CPUs without
    BF16, where bf16 is converted, not computed). True where this torch cannot say (no
    warning on a guess). Without it torch emulates bf16: a DCGAN critic convolution took
    294 ms under bf16 autocast against 37 ms in float32 on a 2-core AVX2 EPYC (README)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return True
