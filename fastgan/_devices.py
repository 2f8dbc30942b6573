"""The device-name check shared by the trainer and the evaluator."""
import torch


def check_device(want, who=""):
    """ValueError (its message starts with `who`) naming `want` when it is not a device torch
    knows, or a CUDA device this machine lacks. None passes: the caller then picks cuda where
    there is one, else cpu."""
    if want is None:
        return
    try:
        device = torch.device(want)
    except (RuntimeError, TypeError):
        raise ValueError(f"{who}device {want!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"{who}device {want!r}: {why}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{who}device {want!r}: this machine shows {torch.cuda.device_count()} "
                             "CUDA device(s)")
