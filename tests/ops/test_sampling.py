"""fastgan.ops.interpolate / perturb: the penalty's samples, random numbers on the device.

Every backend draws the same Philox4x32-10 numbers from a seed, so outputs agree with the
reference to the bit in float32/float64 (one fma, one rounding), and to one ulp in 16-bit
dtypes under Triton's interpreter (it truncates float32 -> 16-bit stores).
"""
import pytest
import torch

from fastgan.ops import (draw_seed, interpolate, interpolate_reference, perturb,
                         perturb_reference)
from fastgan.ops._philox import philox_words, uniform

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
EXACT = dict(rtol=0, atol=0)
ULP = {torch.bfloat16: dict(rtol=2 ** -7, atol=1e-30), torch.float16: dict(rtol=2 ** -10, atol=6e-8)}
SHAPES = [(1, 1), (3, 3, 7, 11), (4, 2, 5, 5), (5, 4097)]


def _tol(backend, dtype):
    return ULP[dtype] if backend == "triton" and dtype in ULP else EXACT


def _images(shape, dtype, device, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(device)


def _seed(value, device):
    return torch.tensor([value], dtype=torch.int64, device=device)


def test_philox_known_answers():
    # Random123's known-answer vector for Philox4x32-10, key 0, counter 0.
    words = philox_words(0, torch.tensor([0]))[0].tolist()
    assert words == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    # The halves of a negative seed and a counter past 2^32 (values from csrc/philox.h).
    w = philox_words(-1234567890123456789, torch.tensor([2**33 + 5]))[0].tolist()
    assert w == [0xA8888DCE, 0x30F13EEA, 0x61AD629F, 0xC3E3D030]


def test_triton_philox_matches_reference(require_backend):
    require_backend("triton", "cpu")
    from fastgan.kernels import _philox as tphilox
    seed = _seed(-1234567890123456789, "cpu")
    counters = torch.tensor([0, 1, 7, 2**32 - 1, 2**33 + 5], dtype=torch.int64)
    assert torch.equal(tphilox.philox_words(seed, counters), philox_words(seed, counters))


def test_uniform_is_in_unit_interval_and_flat():
    u = uniform(philox_words(12345, torch.arange(50000)).reshape(-1))
    assert u.min() >= 0 and u.max() < 1
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - 20000).abs().max() < 600  # ~4.5 sigma of a binomial(200000, 0.1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_interpolate_matches_reference(fused_backend_device, dtype, shape):
    backend, device = fused_backend_device
    real = _images(shape, dtype, device, 1)
    fake = _images(shape, dtype, device, 2)
    seed = _seed(987654321, device)
    x = interpolate(real, fake, seed=seed, backend=backend)
    torch.testing.assert_close(x, interpolate_reference(real, fake, seed), **_tol(backend, dtype))
    assert x.dtype == dtype and x.shape == real.shape


def test_interpolate_is_one_point_per_sample_on_the_segment(backend_device):
    backend, device = backend_device
    real = _images((6, 3, 5, 5), torch.float64, device, 3)
    fake = _images((6, 3, 5, 5), torch.float64, device, 4)
    x = interpolate(real, fake, seed=_seed(5, device), backend=backend)
    t = ((x - fake) / (real - fake)).reshape(6, -1)
    assert ((t >= 0) & (t < 1)).all()
    torch.testing.assert_close(t, t[:, :1].expand_as(t), rtol=1e-9, atol=1e-9)  # one eps per sample
    assert t[:, 0].unique().numel() == 6


@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_interpolate_layouts(backend_device, layout):
    backend, device = backend_device
    real = _images((3, 4, 5, 6), torch.float32, device, 5)
    fake = _images((3, 4, 5, 6), torch.float32, device, 6)
    if layout == "channels_last":
        real, fake = (t.contiguous(memory_format=torch.channels_last) for t in (real, fake))
    else:
        real, fake = real.transpose(2, 3), fake.transpose(2, 3)
    seed = _seed(77, device)
    x = interpolate(real, fake, seed=seed, backend=backend)
    torch.testing.assert_close(x, interpolate_reference(real, fake, seed), **EXACT)


@pytest.mark.parametrize("real_layout, fake_layout, want", [
    ("channels_last", "contiguous", "real"), ("contiguous", "channels_last", "real"),
    ("transposed", "contiguous", "real"), ("batch_inner", "channels_last", "contiguous")])
def test_interpolate_returns_reals_layout(backend_device, real_layout, fake_layout, want):
    # real's layout whatever fake's (a layout whose samples are not each one dense range,
    # here batch innermost, becomes contiguous), in every backend, the reference included.
    backend, device = backend_device
    make = {"contiguous": lambda t: t, "transposed": lambda t: t.transpose(2, 3),
            "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
            "batch_inner": lambda t: t.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)}
    real = make[real_layout](_images((3, 4, 5, 6), torch.float32, device, 5))
    fake = make[fake_layout](_images(tuple(real.shape), torch.float32, device, 6))
    seed = _seed(78, device)
    x = interpolate(real, fake, seed=seed, backend=backend)
    assert x.stride() == (real.stride() if want == "real" else torch.empty(real.shape).stride())
    torch.testing.assert_close(x, interpolate_reference(real, fake, seed), **EXACT)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 1, 1)], ids=str)
def test_perturb_matches_reference(fused_backend_device, dtype, shape):
    backend, device = fused_backend_device
    real = _images(shape, dtype, device, 7)
    seed = _seed(-42, device)
    x = perturb(real, seed=seed, backend=backend)
    wide = real.double() if dtype == torch.float64 else real.float()
    sigma = (torch.std(wide, correction=0).float() * 0.5).reshape(1)
    torch.testing.assert_close(x, perturb_reference(real, sigma, seed, -1.0, 1.0), **_tol(backend, dtype))


def test_perturb_follows_the_paper(backend_device):
    backend, device = backend_device
    real = _images((8, 3, 6, 6), torch.float64, device, 8) * 0.5  # inside [-1, 1], room to move
    x = perturb(real, seed=_seed(9, device), backend=backend)
    delta = (x - real) / (0.5 * real.std(correction=0))
    assert (delta >= 0).all() and (delta < 1).all()  # real + 0.5 * std * U[0, 1)
    assert 0.45 < delta.mean().item() < 0.55
    near_edge = torch.tensor([[0.999, -1.0, 0.5, 0.99]] * 4, dtype=torch.float64, device=device)
    clamped = perturb(near_edge, seed=_seed(1, device), backend=backend)
    free = perturb(near_edge, data_range=None, seed=_seed(1, device), backend=backend)
    assert free.max().item() > 1.0  # the noise pushes past the data range...
    assert clamped.max().item() == 1.0 and clamped.min().item() >= -1.0  # ...and the clamp holds it
    torch.testing.assert_close(clamped, free.clamp(-1, 1), **EXACT)


def test_perturb_channels_last_and_strided(backend_device):
    backend, device = backend_device
    real = _images((3, 4, 5, 6), torch.float32, device, 10)
    seed = _seed(11, device)
    for t in (real.contiguous(memory_format=torch.channels_last), real[:, ::2]):
        wide = t.float()
        sigma = (torch.std(wide, correction=0) * 0.5).reshape(1)
        x = perturb(t, seed=seed, backend=backend)
        torch.testing.assert_close(x, perturb_reference(t, sigma, seed, -1.0, 1.0), **EXACT)


def test_seeds_from_a_generator_repeat_and_differ(backend_device):
    backend, device = backend_device
    real = _images((4, 2, 3, 3), torch.float32, device, 12)
    fake = _images((4, 2, 3, 3), torch.float32, device, 13)
    gen_device = device if device == "cpu" else "cuda"
    a = interpolate(real, fake, generator=torch.Generator(gen_device).manual_seed(5), backend=backend)
    b = interpolate(real, fake, generator=torch.Generator(gen_device).manual_seed(5), backend=backend)
    gen = torch.Generator(gen_device).manual_seed(5)
    c1 = interpolate(real, fake, generator=gen, backend=backend)
    c2 = interpolate(real, fake, generator=gen, backend=backend)
    assert torch.equal(a, b) and torch.equal(a, c1) and not torch.equal(c1, c2)
    seed = draw_seed(device, torch.Generator(gen_device).manual_seed(5))
    assert seed.dtype == torch.int64 and seed.shape == (1,) and seed.device.type == torch.device(device).type


@pytest.mark.parametrize("call,error,words", [
    (lambda: interpolate(torch.ones(2, 3), torch.ones(2, 4)), ValueError, "fake must match real"),
    (lambda: interpolate(torch.ones(2, 3, dtype=torch.int32), torch.ones(2, 3)), TypeError, "real has dtype"),
    (lambda: interpolate(torch.ones(0, 3), torch.ones(0, 3)), ValueError, "at least one element"),
    (lambda: interpolate(torch.ones(2, 3), torch.ones(2, 3), seed=torch.ones(1)), TypeError,
     "seed must be a 1-element int64 tensor"),
    (lambda: perturb(torch.ones(2, 3), data_range=(1.0, -1.0)), ValueError, "data_range"),
    (lambda: perturb(torch.ones(2, 3), scale=-1), ValueError, "scale must be a finite number >= 0"),
])
def test_bad_input_names_the_problem(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_cpp_entry_points_check_their_arguments(require_backend):
    require_backend("cpp", "cpu")
    ops = torch.ops.fastgan
    seed = _seed(1, "cpu")
    with pytest.raises(RuntimeError, match="fake must match real"):
        ops.interpolate(torch.ones(2, 3), torch.ones(3, 2).t(), seed)
    with pytest.raises(RuntimeError, match="seed must be a 1-element int64 tensor"):
        ops.interpolate(torch.ones(2, 3), torch.ones(2, 3), torch.ones(1))
    with pytest.raises(RuntimeError, match="scale must be a 1-element float32 tensor"):
        ops.perturb(torch.ones(2, 3), torch.ones(1, dtype=torch.float64), seed, -1.0, 1.0)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fastgan
    real = _images((3, 2, 4, 4), torch.float32, "cpu", 14)
    fake = _images((3, 2, 4, 4), torch.float32, "cpu", 15)
    seed = _seed(3, "cpu")
    torch.library.opcheck(getattr(ops, "interpolate" + suffix).default, (real, fake, seed))
    torch.library.opcheck(getattr(ops, "perturb" + suffix).default,
                          (real, torch.tensor([0.3]), seed, -1.0, 1.0))


def _cudnn_one_channel(shape, dtype, device, seed):
    """A 1-channel channels_last batch as cuDNN returns it: stride 1 on the size-1 channel
    dim, where .contiguous() and the loaders have H*W (the same memory walk)."""
    t = _images(shape, dtype, device, seed)
    n, _, h, w = shape
    return torch.empty_strided(shape, (h * w, 1, w, 1), dtype=dtype, device=device).copy_(t)


def test_strides_that_differ_only_on_a_size1_dim(backend_device):
    # The first GPU run of the trainer (an H100, 2026-11-22) fed interpolate a generator's
    # 1-channel output like this and a real batch with the usual strides: .contiguous()
    # changed neither, and the kernel's argument check refused the pair.
    backend, device = backend_device
    real = _images((4, 1, 6, 5), torch.float32, device, 21)
    fake = _cudnn_one_channel((4, 1, 6, 5), torch.float32, device, 22)
    assert real.stride() != fake.stride() and fake.is_contiguous()
    seed = _seed(7, device)
    got = interpolate(real, fake, seed=seed, backend=backend)
    want = interpolate_reference(real, fake.contiguous(), seed)
    torch.testing.assert_close(got, want, **EXACT)
    if backend in ("cpp", "cuda"):  # the op itself accepts the pair too: the same memory walk
        torch.testing.assert_close(torch.ops.fastgan.interpolate(real, fake, seed), want, **EXACT)


@pytest.mark.gpu
def test_a_cuda_argument_error_raises_in_python(require_backend):
    # A failed argument check in a CUDA entry point must surface as RuntimeError with its
    # message. In a child process: in the first GPU run (an H100, 2026-11-22) the trainer's
    # processes ended in a segmentation fault inside interpolate's CUDA entry point where
    # this check failed, so a crash here must fail this test, not end the test session.
    import subprocess
    import sys
    require_backend("cuda", "cuda")
    code = (
        "import torch\n"
        "import fastgan.ops\n"
        "seed = torch.ones(1, dtype=torch.int64, device='cuda')\n"
        "try:\n"
        "    torch.ops.fastgan.interpolate(torch.ones(2, 3, device='cuda'),\n"
        "                                  torch.ones(3, 2, device='cuda').t(), seed)\n"
        "except RuntimeError as e:\n"
        "    print('raised:', 'fake must match real' in str(e))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    assert "raised: True" in r.stdout, r.stdout + r.stderr[-3000:]
