"""fastgan.ops.gather_images in every backend against the reference.

Every backend computes (u - 127.5) / 127.5 in float32 with an IEEE division and rounds once,
so all agree to the bit in every dtype; the one exception is Triton's interpreter, which
truncates float32 -> bfloat16 (one ulp; a GPU rounds to nearest even).
"""
import pytest
import torch

from fastgan import _backend, _ext
from fastgan.ops import gather_images, gather_images_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EXACT = dict(rtol=0, atol=0)
BF16_ULP = dict(rtol=2 ** -7, atol=0)
# (N, H, W, C, B): odd sizes, one channel, an empty and a one-sample batch.
SHAPES = [(6, 5, 5, 3, 13), (4, 7, 9, 1, 13), (3, 7, 9, 3, 1), (5, 5, 5, 1, 0), (9, 4, 6, 3, 7)]


def _images(n, h, w, c, seed):
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (n, h, w, c), generator=gen, dtype=torch.uint8)
    data.view(-1)[:2] = torch.tensor([0, 255], dtype=torch.uint8)  # both ends of the range
    return data


def _index(n, b, seed):
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n, (b,), generator=gen)
    if b >= 3:
        index[2] = index[0]  # a repeated index
    return index


def _flip(mode, b, seed):
    if mode == "none":
        return None
    if mode == "all":  # uint8, any nonzero value flips
        return torch.full((b,), 7, dtype=torch.uint8)
    gen = torch.Generator().manual_seed(seed)
    flip = torch.rand(b, generator=gen) < 0.5
    flip[:2] = torch.tensor([True, False])[:b]
    return flip


def _tolerance(backend, device, dtype):
    interpreted_bf16 = backend == "triton" and device == "cpu" and dtype == torch.bfloat16
    return BF16_ULP if interpreted_bf16 else EXACT


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("flip_mode", ["none", "all", "mixed"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_matches_reference(fused_backend_device, shape, flip_mode, channels_last):
    backend, device = fused_backend_device
    n, h, w, c, b = shape
    data = _images(n, h, w, c, seed=n * h).to(device)
    index = _index(n, b, seed=b).to(device)
    flip = _flip(flip_mode, b, seed=b + 1)
    flip = None if flip is None else flip.to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for dtype in DTYPES:
        out = gather_images(data, index, flip, dtype=dtype, channels_last=channels_last,
                            backend=backend)
        ref = gather_images_reference(data.cpu(), index.cpu(), None if flip is None else flip.cpu(),
                                      dtype=dtype, channels_last=channels_last)
        assert out.shape == (b, c, h, w) and out.dtype == dtype and out.device == data.device
        assert out.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(out.cpu(), ref, **_tolerance(backend, device, dtype))


def test_reference_is_the_formula():
    """Each of the 256 bytes against (u - 127.5) / 127.5 computed in float64 and rounded to
    float32 (a float64 quotient rounds to the correctly rounded float32 one), with a flip."""
    u = torch.arange(256, dtype=torch.uint8).view(1, 4, 64, 1)
    out = gather_images_reference(u, torch.tensor([0, 0]), torch.tensor([False, True]))
    exact = ((torch.arange(256, dtype=torch.float64) - 127.5) / 127.5).to(torch.float32)
    assert torch.equal(out[0].flatten(), exact)
    assert torch.equal(out[1], out[0].flip(-1))
    assert out.min() == -1 and out.max() == 1


def test_every_byte_value(backend_device):
    """All 256 inputs, every dtype: -1 and +1 exactly at 0 and 255, the rest as the reference."""
    backend, device = backend_device
    data = torch.arange(256, dtype=torch.uint8).view(1, 4, 64, 1).expand(2, 4, 64, 3).contiguous()
    index = torch.tensor([1, 0])
    for dtype in DTYPES:
        out = gather_images(data.to(device), index.to(device), dtype=dtype, backend=backend).cpu()
        ref = gather_images_reference(data, index, dtype=dtype)
        torch.testing.assert_close(out, ref, **_tolerance(backend, device, dtype))
        assert (out.flatten(2)[..., [0, 255]] == torch.tensor([-1.0, 1.0], dtype=dtype)).all()


def test_int32_index_is_the_int64_one(backend_device):
    backend, device = backend_device
    data = _images(9, 5, 7, 3, seed=4).to(device)
    index = torch.tensor([8, 0, 3, 3, 5], device=device)
    flip = torch.tensor([True, False, True, False, False], device=device)
    want = gather_images(data, index, flip, backend=backend)
    got = gather_images(data, index.int(), flip, backend=backend)
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_index_out_of_range(backend_device):
    backend, device = backend_device
    if (backend, device) == ("reference", "cuda"):
        pytest.skip("the reference reports an out-of-range CUDA index by a device-side assert "
                    "(no host sync), which leaves the CUDA context unusable for the tests after it")
    data = _images(4, 3, 5, 3, seed=0).to(device)
    index = torch.tensor([1, 4, 0], device=device)
    if backend in ("cpp", "reference"):
        with pytest.raises(RuntimeError, match=r"index\[1\] = 4 is out of range"):
            gather_images(data, index, backend=backend)
        return
    out = gather_images(data, index, backend=backend).cpu()  # cuda, triton: NaN, no sync
    assert out[1].isnan().all()
    ref = gather_images_reference(data.cpu(), torch.tensor([1, 0]))
    assert torch.equal(out[[0, 2]], ref)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("bad", [-1, -4, 4])
def test_negative_or_large_index_raises_naming_it(require_backend, backend, bad):
    # No Python wrap-around in the reference: the same error as the C++ kernel's.
    require_backend(backend, "cpu")
    index = torch.tensor([0, 2, bad, 1])
    with pytest.raises(RuntimeError, match=rf"index\[2\] = {bad} is out of range for data with N = 4"):
        gather_images(_images(4, 3, 5, 3, seed=0), index, backend=backend)


@pytest.mark.parametrize("make, error, match", [
    (lambda d, i, f: (d.float(), i, f), TypeError, "data has dtype torch.float32"),
    (lambda d, i, f: (d[0], i, f), ValueError, r"data must be \[N, H, W, C\]"),
    (lambda d, i, f: (d[..., :2].contiguous(), i, f), ValueError, "C = 1 or 3"),
    (lambda d, i, f: (d[:, ::2], i, f), ValueError, "data must be contiguous"),
    (lambda d, i, f: (d, i.short(), f), TypeError, "index has dtype torch.int16; expected torch.int64 or torch.int32"),
    (lambda d, i, f: (d, i.float(), f), TypeError, "index has dtype torch.float32; expected torch.int64 or"),
    (lambda d, i, f: (d, i.view(1, -1), f), ValueError, "index must be 1-D"),
    (lambda d, i, f: (d, i.to("meta"), f), ValueError, "index is on meta but data is on cpu"),
    (lambda d, i, f: (d, i, f[:2]), ValueError, "flip must be 1-D with 3 elements"),
    (lambda d, i, f: (d, i, f.float()), TypeError, "flip has dtype torch.float32"),
    (lambda d, i, f: (d, i, f.to("meta")), ValueError, "flip is on meta but data is on cpu"),
    (lambda d, i, f: (d, i, [True] * 3), TypeError, "flip must be a tensor or None"),
])
def test_argument_errors(make, error, match):
    flip = torch.tensor([True, False, True])
    args = make(_images(4, 4, 6, 3, seed=0), torch.tensor([0, 3, 1]), flip)
    with pytest.raises(error, match=match):
        gather_images(*args)


def test_option_errors():
    data, index = _images(4, 4, 6, 3, seed=0), torch.tensor([0, 3])
    with pytest.raises(TypeError, match="dtype must be torch.float32, torch.float16 or torch.bf"):
        gather_images(data, index, dtype=torch.float64)
    with pytest.raises(TypeError, match="channels_last must be a bool"):
        gather_images(data, index, channels_last=1)


@pytest.mark.parametrize("args, match", [
    (lambda d, i, f: (d.float(), i, f, torch.float32, False), "data has dtype Float; expected "),
    (lambda d, i, f: (d[0], i, f, torch.float32, False), r"data must be \[N, H, W, C\]"),
    (lambda d, i, f: (d, i.int(), f, torch.float32, False), "index has dtype Int; expected "),
    (lambda d, i, f: (d, i, f[:1], torch.float32, False), "flip must be 1-D with 2 elements"),
    (lambda d, i, f: (d, i, f, torch.float64, False), "dtype must be torch.float32"),
])
def test_cpp_checks(require_backend, args, match):
    """The C++ entry point checks what the Python wrapper checks, for direct callers."""
    require_backend("cpp", "cpu")
    if not _ext.has_op("gather_images"):
        pytest.fail("fastgan._C lacks gather_images: rebuild it")
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastgan.gather_images(*args(_images(3, 4, 5, 3, seed=0), torch.tensor([2, 0]),
                                              torch.tensor([1, 0], dtype=torch.uint8)))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    name = "gather_images_triton" if backend == "triton" else "gather_images"
    op = getattr(torch.ops.fastgan, name)
    data, index = _images(5, 3, 7, 3, seed=0), torch.tensor([4, 0, 4])
    flip = torch.tensor([1, 0, 1], dtype=torch.uint8)
    torch.library.opcheck(op.default, (data, index, flip, torch.float32, False))
    torch.library.opcheck(op.default, (data, index, None, torch.bfloat16, True))


def test_torch_compile_traces(require_backend):
    require_backend("cpp", "cpu")
    data, index = _images(5, 3, 7, 3, seed=0), torch.tensor([4, 0, 2])
    flip = torch.tensor([True, False, True])

    def batch(d, i, f):
        return gather_images(d, i, f, dtype=torch.bfloat16, channels_last=True, backend="cpp") * 2

    compiled = torch.compile(batch, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(data, index, flip), batch(data, index, flip))


def test_auto_falls_back_when_extension_lacks_op(require_backend, monkeypatch):
    """An extension built before gather_images existed: auto takes the reference, an explicit
    cpp says why it cannot run."""
    require_backend("cpp", "cpu")
    monkeypatch.setattr(_ext, "has_op", lambda name: False)
    data, index = _images(3, 4, 5, 1, seed=0), torch.tensor([2, 0])
    ref = gather_images_reference(data, index)
    assert torch.equal(gather_images(data, index, backend="auto"), ref)
    with pytest.raises(_backend.BackendUnavailable, match="has no op fastgan::gather_images; rebuild it"):
        gather_images(data, index, backend="cpp")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_graph_replays_new_indices(require_backend, backend):
    """No host sync and the current stream: the op captures into a CUDA graph, and a replay
    reads the indices and flips copied into the captured tensors."""
    require_backend(backend, "cuda")
    data = _images(9, 5, 7, 3, seed=0).cuda()
    index = torch.tensor([0, 1, 2, 3], device="cuda")
    flip = torch.zeros(4, dtype=torch.bool, device="cuda")

    def run():
        return gather_images(data, index, flip, dtype=torch.bfloat16, backend=backend)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()  # warm-up off the capture: Triton compiles here
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    new_index, new_flip = torch.tensor([8, 3, 3, 5]), torch.tensor([True, False, True, True])
    index.copy_(new_index)
    flip.copy_(new_flip)
    graph.replay()
    ref = gather_images_reference(data.cpu(), new_index, new_flip, dtype=torch.bfloat16)
    assert torch.equal(out.cpu(), ref)
