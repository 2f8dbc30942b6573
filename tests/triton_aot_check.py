"""Compiles every Triton kernel fastgan launches for sm_90, on a machine without a GPU.

Run by tests/test_triton_sources.py in a subprocess (TRITON_INTERPRET unset, so the kernels
are real JIT functions). JITFunction.run is replaced by a function that compiles the
launch it is given (argument types from the actual arguments) with triton.compile for a
CUDA sm_90 target instead of launching; the launchers are then driven with small CPU
tensors in every dtype and layout the ops accept. A kernel the GPU compiler rejects
(the interpreter is lenient: e.g. a non-constexpr module global read in a kernel) fails
here, not first on a GPU machine.
"""
import os
os.environ.pop("TRITON_INTERPRET", None)
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
         torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8", torch.bool: "i1"}
OPTION_KEYS = {"num_warps", "num_stages", "enable_fp_fusion", "num_ctas"}
compiled = {}


def _type(v):
    if isinstance(v, torch.Tensor):
        return "*" + TYPES[v.dtype]
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -2**31 <= v < 2**31 else "i64"
    if isinstance(v, float):
        return "fp32"
    raise TypeError(type(v))


def fake_run(self, *args, grid, warmup, **kwargs):
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_KEYS}
    _compile(self, dict(zip(self.arg_names, args)) | kwargs, options)
    if "CUDA_ORDER" in kwargs:  # set by the tensors' device, CPU here: the GPU's variant too
        _compile(self, dict(zip(self.arg_names, args)) | kwargs | {"CUDA_ORDER": True}, options)
    return None


def _compile(self, bound, options):
    signature, constexprs = {}, {}
    for i, (name, p) in enumerate(zip(self.arg_names, self.params)):
        v = bound[name]
        if p.is_constexpr or v is None:
            signature[name] = "constexpr"
            constexprs[(i,)] = v
        else:
            signature[name] = _type(v)
    key = (self.__name__, tuple(sorted(signature.items())), tuple(sorted(map(str, constexprs.items()))),
           tuple(sorted(options.items())))
    if key not in compiled:
        triton.compile(ASTSource(self, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                       options=options)
        compiled[key] = self.__name__


JITFunction.run = fake_run
import fastgan  # noqa: E402
from fastgan import kernels as K  # noqa: E402

for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
    x = torch.randn(3, 4, 5, 6).to(dtype)
    cl = x.contiguous(memory_format=torch.channels_last)
    seed = torch.tensor([1])
    t = torch.float64 if dtype == torch.float64 else torch.float32
    K.clip_weights.clip_weights_([x.clone()], 0.01)
    p, g, v = x.clone(), x.clone(), x.clone().abs()
    K.rmsprop_clip.rmsprop_clip_([p], [g], [v], [x.clone()], [x.clone()], torch.tensor([1e-3]), 0.99, 1e-8,
                                 0.0, 0.9, True, False, 0.01)
    K.rmsprop_clip.rmsprop_clip_([p], [g], [v], [], [], torch.tensor([1e-3]), 0.99, 1e-8, 0.0, 0.0,
                                 False, False, 0.01, torch.tensor([8.0]), torch.zeros(1))  # loss scaling
    K.penalty.penalty_forward(x, 10.0, 1.0, 1e-12)
    K.penalty.penalty_forward(x, 10.0, 0.0, 1e-12)
    s = torch.ones(3, dtype=t)
    dout = torch.ones((), dtype=t)
    for center in (1.0, 0.0):
        K.penalty.penalty_backward(x, s, dout, 10.0, center, 1e-12)
        K.penalty.penalty_double_backward(x, s, dout, x, 10.0, center, 1e-12)
    for xx in (x, cl, x.reshape(12, 30)):
        K.bias_leaky_relu.bias_leaky_relu(xx, torch.ones(xx.shape[1]), 0.2)
        K.bias_leaky_relu.bias_leaky_relu(xx, None, 0.2)
        K.bias_leaky_relu.leaky_relu_backward(xx, xx, 0.2)
        w, b, rm, rv = (torch.ones(xx.shape[1]) for _ in range(4))
        for use in (True, False):
            K.batch_norm_act.batch_norm_act(xx, w, b, rm, rv, use, 0.1, 1e-5, 0.0)
            K.batch_norm_act.batch_norm_act_backward(xx, xx, xx, w, torch.zeros(xx.shape[1], dtype=t),
                                                     torch.ones(xx.shape[1], dtype=t), use, 0.0)
        K.batch_norm_act.batch_norm_act(xx, None, None, None, None, True, 0.1, 1e-5, 0.2)
        for wb in ((w, b), (None, None)):
            out, mean, rstd = K.sample_norm_act.sample_norm_act(xx, *wb, 1e-5, 0.2)
            for channel_grads in (True, False):
                K.sample_norm_act.sample_norm_act_backward(xx, out, xx, wb[0], mean, rstd, 0.2, channel_grads)
            K.sample_norm_act.sample_norm_act_double_backward(xx, None, None, xx, out, xx, wb[0], mean, rstd, 0.2)
            K.sample_norm_act.sample_norm_act_double_backward(xx, w, b, xx, out, xx, wb[0], mean, rstd, 0.2)
    K.penalty_sampling.interpolate(x, x, seed)
    K.penalty_sampling.perturb(x, torch.tensor([0.1]), seed, -1.0, 1.0)
    k = torch.zeros(1)
    K.began_loss.began_loss(x, x, x, x, k, 0.5, 0.001)
    K.began_loss.began_loss_backward(x, x, x, x, k, dout, dout)
K._philox.philox_words(seed, torch.arange(5))
for c in (1, 3):
    images, index = torch.zeros(4, 5, 7, c, dtype=torch.uint8), torch.tensor([2, 0, 3])
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for flip in (None, torch.tensor([1, 0, 1], dtype=torch.uint8)):
            for channels_last in (False, True):
                K.gather_images.gather_images(images, index, flip, dtype, channels_last)
print(f"compiled {len(compiled)} kernel variants for sm_90:", ", ".join(sorted(set(compiled.values()))))
