"""fastgan.ops.gather_images: a training batch from a device-resident uint8 dataset, in one kernel.

    out[b, c, h, w] = (float(data[index[b], h, w', c]) - 127.5) / 127.5,
    w' = W-1-w when flip[b] is nonzero, else w

A prepared dataset sits in memory as one uint8 tensor [N, H, W, C] (HWC, as images are
stored; C = 1 or 3), on the GPU when it fits (issue 6). Each step's batch is then a gather
of `index`, a conversion to [-1, 1], an optional horizontal flip per sample (the only
augmentation of the DCGAN/WGAN recipes) and a transpose to NCHW: in eager PyTorch seven
kernels (index, flip, where, to float, sub, div, the layout copy), each writing a temporary;
here one read of B*H*W*C bytes and one write, with no host sync and no host work per step.
Batch 128 of 64x64x3 on one CPU thread: 6.0 ms eager, 1.9 ms torch.compile, 0.51 ms here
(benchmarks/bench_gather_images.py).

Arithmetic in float32 with an IEEE division, rounded once to dtype: 0 -> -1 and 255 -> +1
exactly, and every backend is bit-identical to the reference in float32.

Indices must lie in [0, N). The reference on the CPU and the C++ kernel raise a
RuntimeError naming the first other (a negative index does not wrap around); the
reference on a GPU fails a device-side assert (no host sync); the CUDA and Triton kernels
cannot raise without a host sync, so they read nothing for such an index and write NaN
in its sample (one compare per pixel), which a loss then makes visible.
"""
import torch

from fastgan import _backend, _ext, kernels
from fastgan.kernels._launch import on_tensors_device

OP = _backend.Op("gather_images", auto={"cuda": ("cuda", "triton"), "cpu": ("cpp",)})
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _memory_format(channels_last):
    return torch.channels_last if channels_last else torch.contiguous_format


def gather_images_reference(data, index, flip=None, *, dtype=torch.float32, channels_last=False):
    """The oracle: plain PyTorch, [B, C, H, W] of dtype (channels_last memory when asked)."""
    n = data.shape[0]
    inside = (index >= 0) & (index < n)  # no wrap-around: [0, N) as the kernels
    if index.device.type == "cpu":
        bad = (~inside).nonzero()
        if bad.numel():
            i = bad[0, 0].item()
            raise RuntimeError(f"gather_images: index[{i}] = {index[i].item()} is out of range for "
                               f"data with N = {n} images")
    else:  # no host sync on a GPU: a device-side assert, as torch's indexing gives past N
        torch._assert_async(inside.all(), "gather_images: an index is out of range [0, N)")
    x = data[index]  # [B, H, W, C]
    if flip is not None:
        x = torch.where(flip.view(-1, 1, 1, 1).bool(), x.flip(2), x)
    x = x.permute(0, 3, 1, 2).to(torch.float32) - 127.5
    # A true division, as the kernels' (csrc/gather_images.h): CUDA's x / scalar multiplies
    # by the rounded reciprocal, 1 ulp off in about half the levels; a tensor divisor divides.
    x = x / torch.full_like(x, 127.5)
    return x.to(dtype).contiguous(memory_format=_memory_format(channels_last))


def _fake(data, index, flip, dtype, channels_last):
    _, h, w, c = data.shape
    out = data.new_empty((index.shape[0], c, h, w), dtype=dtype)
    return out.contiguous(memory_format=_memory_format(channels_last))


if _ext.has_op("gather_images"):
    torch.library.register_fake("fastgan::gather_images")(_fake)

if kernels.error() is None:
    @torch.library.custom_op("fastgan::gather_images_triton", mutates_args=())
    @on_tensors_device
    def _gather_triton(data: torch.Tensor, index: torch.Tensor, flip: torch.Tensor | None,
                       dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
        return kernels.gather_images.gather_images(data, index, flip, dtype, channels_last)

    _gather_triton.register_fake(_fake)


def _check(data, index, flip, dtype, channels_last):
    op = "gather_images"
    for name, t in (("data", data), ("index", index)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if data.dtype != torch.uint8:
        raise TypeError(f"{op}: data has dtype {data.dtype}; expected torch.uint8")
    if data.dim() != 4 or data.shape[3] not in (1, 3):
        raise ValueError(f"{op}: data must be [N, H, W, C] with C = 1 or 3, got shape "
                         f"{tuple(data.shape)}")
    if not data.is_contiguous():
        raise ValueError(f"{op}: data must be contiguous (HWC images back to back)")
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{op}: index has dtype {index.dtype}; expected torch.int64 or torch.int32")
    if index.dim() != 1:
        raise ValueError(f"{op}: index must be 1-D, got shape {tuple(index.shape)}")
    if index.device != data.device:
        raise ValueError(f"{op}: index is on {index.device} but data is on {data.device}")
    if flip is not None:
        if not isinstance(flip, torch.Tensor):
            raise TypeError(f"{op}: flip must be a tensor or None, got {type(flip).__name__}")
        if flip.dtype not in (torch.bool, torch.uint8):
            raise TypeError(f"{op}: flip has dtype {flip.dtype}; expected torch.bool or "
                            "torch.uint8")
        if flip.shape != index.shape:
            raise ValueError(f"{op}: flip must be 1-D with {index.shape[0]} elements (one per "
                             f"index), got shape {tuple(flip.shape)}")
        if flip.device != data.device:
            raise ValueError(f"{op}: flip is on {flip.device} but data is on {data.device}")
    if dtype not in OUT_DTYPES:
        raise TypeError(f"{op}: dtype must be torch.float32, torch.float16 or torch.bfloat16, "
                        f"got {dtype}")
    if not isinstance(channels_last, bool):
        raise TypeError(f"{op}: channels_last must be a bool, got {type(channels_last).__name__}")


def gather_images(data, index, flip=None, *, dtype=torch.float32, channels_last=False,
                  backend=None):
    """A batch [B, C, H, W] in [-1, 1] of dtype from uint8 images data[index] ([N, H, W, C]).

    flip: None or bool/uint8 [B]; a nonzero flip[b] mirrors sample b along W. The output
    is contiguous NCHW, or torch.channels_last memory with channels_last=True. Not
    differentiable. index is int64 or int32 (the kernels take int64: an int32 index is
    converted first, one small copy) and must lie in [0, N): for an index outside, the cpp
    and reference backends raise, the cuda and triton ones write NaN in that sample (raising
    would sync).
    """
    _check(data, index, flip, dtype, channels_last)
    index = index.long()
    chosen = OP.resolve(data.device, backend)  # an extension without the op: not cpp or cuda
    if chosen == "reference":
        return gather_images_reference(data, index, flip, dtype=dtype, channels_last=channels_last)
    if flip is not None and flip.dtype == torch.bool:
        flip = flip.view(torch.uint8)  # same bytes: the kernels read one byte per sample
    ns = torch.ops.fastgan
    fn = ns.gather_images_triton if chosen == "triton" else ns.gather_images
    return fn(data, index, flip, dtype, channels_last)
