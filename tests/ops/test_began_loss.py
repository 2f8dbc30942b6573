"""fastgan.ops.began_loss against BEGAN's formulas (Berthelot et al. 2017, sec. 3.3-3.4)."""
import pytest
import torch

from fastgan.ops import began_loss, began_loss_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6),
       torch.bfloat16: dict(rtol=1e-5, atol=1e-6), torch.float16: dict(rtol=1e-5, atol=1e-6)}


def _pair(shape, dtype, device, seed, layout="nchw"):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    b = a + torch.randn(shape, generator=gen, dtype=torch.float64) * 0.1
    a, b = a.to(dtype).to(device), b.to(dtype).to(device)
    if layout == "channels_last":
        a, b = (t.contiguous(memory_format=torch.channels_last) for t in (a, b))
    return a, b


def _run(backend, real, real_recon, fake, fake_recon, k):
    leaves = [t.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
              for t in (real, real_recon, fake, fake_recon)]
    d_loss, g_loss, k_next, m = began_loss(*leaves, k, backend=backend)
    grads = torch.autograd.grad(1.3 * d_loss + 0.7 * g_loss, leaves)
    return (d_loss.detach(), g_loss.detach(), k_next, m), grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,layout", [((3, 3, 9, 11), "nchw"), ((1, 3, 64, 64), "channels_last"),
                                          ((5, 7), "nchw")], ids=str)
def test_matches_reference(backend_device, dtype, shape, layout):
    backend, device = backend_device
    real, real_recon = _pair(shape, dtype, device, 1, layout)
    fake, fake_recon = _pair(shape, dtype, device, 2, layout)
    k = torch.tensor([0.3], device=device)
    got, got_grads = _run(backend, real, real_recon, fake, fake_recon, k)
    ref, ref_grads = _run("reference", real.double(), real_recon.double(), fake.double(),
                          fake_recon.double(), k.double())
    for g, r in zip(got, ref):
        torch.testing.assert_close(g.double(), r, **TOL[dtype])
    # Gradients are +-c/N rounded once to the dtype (Triton's interpreter truncates 16-bit
    # stores: one ulp).
    grad_rtol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 2 ** -7, torch.float16: 2 ** -10}
    for g, r in zip(got_grads, ref_grads):
        assert g.dtype == dtype
        torch.testing.assert_close(g, r.to(dtype), rtol=grad_rtol[dtype], atol=0)


def test_k_follows_the_paper_over_100_updates_and_clamps_at_both_ends(backend_device):
    backend, device = backend_device
    real, real_recon = _pair((4, 3, 8, 8), torch.float64, device, 3)
    fake, fake_recon = _pair((4, 3, 8, 8), torch.float64, device, 4)
    l_r = (real - real_recon).abs().mean().item()
    k = torch.zeros(1, dtype=torch.float64, device=device)
    k_py, history, hit = 0.0, [], set()
    for step in range(100):
        # Alternate which side wins so k climbs to 1, then falls to 0.
        scale = 100.0 if step < 50 else 0.05
        f_recon = fake + (fake_recon - fake) * (1.0 / scale)
        l_f = (fake - f_recon).abs().mean().item()
        d_loss, g_loss, k_next, m = began_loss(real, real_recon, fake, f_recon, k, gamma=0.5,
                                               lambda_k=5.0, backend=backend)
        assert d_loss.item() == pytest.approx(l_r - k_py * l_f, rel=1e-12, abs=1e-15)
        assert g_loss.item() == pytest.approx(l_f, rel=1e-12)
        assert m.item() == pytest.approx(l_r + abs(0.5 * l_r - l_f), rel=1e-12)
        k_py = min(max(k_py + 5.0 * (0.5 * l_r - l_f), 0.0), 1.0)
        assert k_next.item() == pytest.approx(k_py, rel=1e-12, abs=1e-15)
        hit.add(k_py)
        k = k_next.reshape(1)
        history.append(k_py)
    assert 1.0 in hit and 0.0 in hit  # both clamps taken
    assert history[49] == 1.0 and history[-1] == 0.0


def test_gradcheck_float64(backend_device):
    backend, device = backend_device
    real, real_recon = _pair((2, 3, 2, 2), torch.float64, device, 5)
    fake, fake_recon = _pair((2, 3, 2, 2), torch.float64, device, 6)
    k = torch.tensor([0.4], dtype=torch.float64, device=device)
    inputs = [t.requires_grad_(True) for t in (real, real_recon, fake, fake_recon)]

    def f(*xs):
        d_loss, g_loss, _, _ = began_loss(*xs, k, backend=backend)
        return d_loss, g_loss

    assert torch.autograd.gradcheck(f, inputs)
    # second order: zero in the inputs (|.| is piecewise linear), linear in the incoming
    # gradients, which the fused backward op alone would drop silently
    assert torch.autograd.gradgradcheck(f, inputs)


def test_a_gradient_of_the_gradient_through_the_incoming_gradient(backend_device):
    backend, device = backend_device
    real, real_recon = _pair((3, 2, 5), torch.float32, device, 7)
    fake, fake_recon = _pair((3, 2, 5), torch.float32, device, 8)
    k = torch.tensor([0.25], device=device)
    got = []
    for b in (backend, "reference"):
        xs = [t.clone().requires_grad_(True) for t in (real, real_recon, fake, fake_recon)]
        v = torch.tensor([2.0, 3.0], device=device, requires_grad=True)
        d_loss, g_loss, _, _ = began_loss(*xs, k, backend=b)
        grads = torch.autograd.grad(v[0] * d_loss + v[1] * g_loss, xs, create_graph=True)
        got.append(torch.autograd.grad(sum((gr * gr).sum() for gr in grads), v)[0])
    torch.testing.assert_close(got[0], got[1])
    assert bool((got[0] != 0).all())


def test_no_gradient_for_k_next_and_convergence(backend_device):
    backend, device = backend_device
    real, real_recon = _pair((2, 3, 4, 4), torch.float32, device, 7)
    fake, fake_recon = _pair((2, 3, 4, 4), torch.float32, device, 8)
    fake_recon.requires_grad_(True)
    _, _, k_next, m = began_loss(real, real_recon, fake, fake_recon, torch.zeros(1, device=device),
                                 backend=backend)
    assert not k_next.requires_grad and not m.requires_grad


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(k=0.0), TypeError, "k must be a 1-element floating tensor"),
    (dict(gamma=1.5), ValueError, r"gamma must be in \[0, 1\]"),
    (dict(lambda_k=-1.0), ValueError, "lambda_k must be a finite number >= 0"),
    (dict(fake_recon=torch.zeros(2, 3)), ValueError, "fake_recon has shape"),
    (dict(real=torch.zeros(2, 4, dtype=torch.int32)), TypeError, "real must be a float32"),
])
def test_bad_input_names_the_problem(kwargs, error, words):
    args = dict(real=torch.zeros(2, 4), real_recon=torch.zeros(2, 4), fake=torch.zeros(2, 4),
                fake_recon=torch.zeros(2, 4), k=torch.zeros(1)) | kwargs
    k = args.pop("k")
    with pytest.raises(error, match=words):
        began_loss(args.pop("real"), args.pop("real_recon"), args.pop("fake"), args.pop("fake_recon"),
                   k, **args)


def test_mixed_dtypes_are_computed_in_the_widest(backend_device):
    """Under autocast the reconstructions come back bfloat16 while the images are float32:
    the loss is computed in float32, as with the reconstructions cast up by hand, and the
    gradients reach the bfloat16 reconstructions in their dtype."""
    backend, device = backend_device
    real, real_recon = _pair((4, 3, 5, 7), torch.float32, device, 1)
    fake, fake_recon = _pair((4, 3, 5, 7), torch.float32, device, 2)
    real_recon, fake_recon = real_recon.bfloat16(), fake_recon.bfloat16().requires_grad_(True)
    k = torch.full((1,), 0.3, device=device)
    got = began_loss(real, real_recon, fake, fake_recon, k, backend=backend)
    up = fake_recon.detach().float().requires_grad_(True)
    want = began_loss(real, real_recon.float(), fake, up, k, backend=backend)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(got[1], fake_recon)
    (grad_up,) = torch.autograd.grad(want[1], up)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, grad_up.bfloat16(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="fake_recon is on meta; real is on"):
        began_loss(real, real_recon, fake, fake_recon.to("meta"), k, backend=backend)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(require_backend, backend):
    require_backend(backend, "cpu")
    suffix = "_triton" if backend == "triton" else ""
    ops = torch.ops.fastgan
    real, real_recon = _pair((2, 3, 5, 5), torch.float32, "cpu", 9)
    fake, fake_recon = _pair((2, 3, 5, 5), torch.float32, "cpu", 10)
    k = torch.tensor([0.2])
    torch.library.opcheck(getattr(ops, "began_loss" + suffix).default,
                          (real, real_recon, fake, fake_recon, k, 0.5, 0.001))
    torch.library.opcheck(getattr(ops, "began_loss_backward" + suffix).default,
                          (real, real_recon, fake, fake_recon, k, torch.tensor(1.0), torch.tensor(0.5)))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_a_began_step_captures_in_a_cuda_graph(backend):
    # k_t lives on the device and nothing is read back: the loss, its gradients and the
    # k update replay from a CUDA graph, k advancing as the formula says.
    real, real_recon = _pair((4, 3, 16, 16), torch.float32, "cuda", 11)
    fake, fake_recon = _pair((4, 3, 16, 16), torch.float32, "cuda", 12)
    fake_recon.requires_grad_(True)
    k = torch.zeros(1, device="cuda")

    def step():
        d_loss, g_loss, k_next, m = began_loss(real, real_recon, fake, fake_recon, k, lambda_k=0.1,
                                               backend=backend)
        (grad,) = torch.autograd.grad(d_loss, fake_recon)
        k.copy_(k_next.reshape(1))
        return d_loss, grad

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    k.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    k.zero_()
    l_r = (real - real_recon).abs().mean().item()
    l_f = (fake - fake_recon).abs().mean().item()
    k_py = 0.0
    for _ in range(3):
        graph.replay()
        k_py = min(max(k_py + 0.1 * (0.5 * l_r - l_f), 0.0), 1.0)
        assert k.item() == pytest.approx(k_py, rel=1e-5, abs=1e-7)


def test_recon_strides_that_differ_only_on_a_size1_dim(backend_device):
    # A 1-channel autoencoder output from cuDNN in channels_last has stride 1 on the channel
    # dim; .contiguous() keeps it, so the op must copy it into real's exact strides itself.
    backend, device = backend_device
    shape = (3, 1, 6, 5)
    real, recon = _pair(shape, torch.float32, device, 3)
    fake, fake_recon = _pair(shape, torch.float32, device, 4)
    odd = (shape[2] * shape[3], 1, shape[3], 1)
    recon = torch.empty_strided(shape, odd, device=device).copy_(recon)
    fake_recon = torch.empty_strided(shape, odd, device=device).copy_(fake_recon)
    assert recon.stride() != real.stride()
    k = torch.tensor([0.3], device=device)
    got, got_grads = _run(backend, real, recon, fake, fake_recon, k)
    ref, ref_grads = _run("reference", real, recon.contiguous(), fake, fake_recon.contiguous(), k)
    for g, r in zip(got + got_grads, ref + ref_grads):
        torch.testing.assert_close(g, r, **TOL[torch.float32])


def test_torch_func_grad_through_the_fused_loss(require_backend):
    # the autograd Function is written with setup_context, the form torch.func transforms take
    require_backend("cpp", "cpu")
    g = torch.Generator().manual_seed(0)
    real, real_recon, fake, fake_recon = (torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
                                          for _ in range(4))
    k = torch.tensor(0.3, dtype=torch.float64)
    grads = {be: torch.func.grad(lambda rr, fr: began_loss(real, rr, fake, fr, k, backend=be)[0],
                                 argnums=(0, 1))(real_recon, fake_recon) for be in ("cpp", "reference")}
    for a, b in zip(grads["cpp"], grads["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
