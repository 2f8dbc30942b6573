"""IEEE arithmetic for Triton kernels that must agree with the C++/CUDA ones.

Triton's plain float32 sqrt and `/` are approximate on NVIDIA GPUs; sqrt_rn/div_rn are
correctly rounded but take float32 only. float64's sqrt and `/` are IEEE already.
"""
import triton
import triton.language as tl


@triton.jit
def sqrt_ieee(x, COMPUTE: tl.constexpr):
    if COMPUTE == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def div_ieee(a, b, COMPUTE: tl.constexpr):
    if COMPUTE == tl.float32:
        return tl.div_rn(a, b)
    else:
        return a / b
