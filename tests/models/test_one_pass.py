"""one_pass: real, fake (and the penalty's points) through the critic in one forward.

The same math as one forward per batch, so the losses, logs and the critic's gradients must
agree (to float32 rounding: the summation order inside the larger convolutions differs); a
critic with BatchNorm couples the samples of its batch and must never be run that way.
"""
import pytest
import torch
from torch import nn

from fastgan import models
from fastgan.models.base import couples_samples
from fastgan.nn import ConvBNLeakyReLU

pytestmark = pytest.mark.usefixtures("one_thread")

# (model, arch): the critics without a sample-coupling layer
CASES = [("wgan-gp", "dcgan"), ("wgan-gp", "resnet"), ("wgan-gp", "mlp"), ("dragan", "dcgan"),
         ("dragan", "mlp"), ("began", "began"), ("began", "mlp"), ("gan", "mlp"), ("lsgan", "mlp"),
         ("wgan", "mlp"), ("ebgan", "mlp")]
SMALL = dict(resolution=16, channels=1, g_width=8, d_width=8, mlp_hidden=16, mlp_depth=2)


def _pair(name, arch, fused=True):
    out = []
    for one in (False, True):
        torch.manual_seed(0)
        out.append(models.build(name, arch=arch, fused=fused, one_pass=one, **SMALL))
    return out


def _critic_step(model, real, fake, seed=1):
    torch.manual_seed(seed)   # the penalty's sampling draws the same numbers in both
    model.critic.zero_grad(set_to_none=True)
    loss, logs = model.critic_loss(model.critic, real, fake)
    loss.backward()
    grads = [p.grad.clone() for p in model.critic.parameters() if p.grad is not None]
    return loss.detach(), {k: v.detach() for k, v in logs.items()}, grads


def _batch(model, n=6):
    gen = torch.Generator().manual_seed(2)
    real = torch.rand((n, *model.data_shape), generator=gen) * 2 - 1
    fake = torch.rand((n, *model.data_shape), generator=gen) * 2 - 1
    return real, fake


@pytest.mark.parametrize("name, arch", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_one_pass_matches_separate_passes(name, arch):
    separate, joint = _pair(name, arch)
    assert not separate.one_pass(separate.critic) and joint.one_pass(joint.critic)
    real, fake = _batch(separate)
    calls = []
    joint.critic.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    loss_a, logs_a, grads_a = _critic_step(separate, real, fake)
    loss_b, logs_b, grads_b = _critic_step(joint, real, fake)
    with_points = name in ("wgan-gp", "dragan")
    assert calls == [len(real) * (3 if with_points else 2)]       # one forward, the whole batch
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert logs_a.keys() == logs_b.keys()
    for k in logs_a:
        torch.testing.assert_close(logs_b[k], logs_a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert len(grads_a) == len(grads_b) > 0
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, arch", [("dcgan", "dcgan"), ("wgan", "dcgan"), ("lsgan", "dcgan"),
                                        ("ebgan", "dcgan")])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "stock"])
def test_batchnorm_critics_never_run_in_one_pass(name, arch, fused):
    separate, joint = _pair(name, arch, fused=fused)
    assert couples_samples(joint.critic)
    assert not joint.one_pass(joint.critic)
    real, fake = _batch(separate)
    calls = []
    joint.critic.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    loss_a, _, grads_a = _critic_step(separate, real, fake)
    loss_b, _, grads_b = _critic_step(joint, real, fake)
    assert calls == [len(real), len(real)]
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_couples_samples():
    assert couples_samples(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    assert couples_samples(nn.Sequential(ConvBNLeakyReLU(1, 2, 4, 2, 1)))
    assert couples_samples(nn.SyncBatchNorm(3))
    assert not couples_samples(nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.LayerNorm(2)))
    assert not couples_samples(nn.InstanceNorm2d(2))
    marked = nn.Linear(2, 2)
    marked.couples_samples = True
    assert couples_samples(nn.Sequential(marked))


def test_one_pass_verdict_follows_the_critic_not_its_id():
    """one_pass remembers each critic's verdict by id(critic): a critic freed and a new one
    made at its address (CPython reuses it) must not inherit the old verdict, or a BatchNorm
    critic would score real, fake and x_hat in one batch. The reuse made deterministic: the
    entry under the new critic's id is an old critic's."""
    import copy
    import gc
    import pickle
    import weakref
    m = models.build("wgan-gp", one_pass=True, **SMALL)
    plain = nn.Sequential(nn.Conv2d(1, 2, 3))
    assert m.one_pass(plain)
    with_bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    m._couples[id(with_bn)] = m._couples[id(plain)]  # as if with_bn lived where plain did
    assert not m.one_pass(with_bn)
    assert m._couples[id(with_bn)][0]() is with_bn and m.one_pass(plain)
    old = nn.Sequential(nn.Conv2d(1, 2, 3))
    assert m.one_pass(old)
    ref = m._couples[id(old)][0]
    del old
    gc.collect()
    assert ref() is None  # the model keeps no critic alive
    for copied in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):  # the cache is dropped, not copied
        assert "_couples" not in vars(copied) and copied.one_pass(plain) and not copied.one_pass(with_bn)
    assert isinstance(m._couples[id(plain)][0], weakref.ref)
    def scores(v):  # a critic that is a function: its layers unknown, so scored batch by batch
        return v.flatten(1).mean(1)
    def declared(v):
        return v.flatten(1).mean(1)
    declared.couples_samples = False  # unless it says it couples nothing
    assert not m.one_pass(scores) and m.one_pass(declared)


def test_one_pass_must_be_a_bool():
    with pytest.raises(ValueError, match="one_pass must be true or false"):
        models.build("wgan-gp", one_pass="yes", **SMALL)


def test_one_pass_under_autocast_with_a_bf16_fake():
    # the trainer's critic step: fake comes out of the generator in bf16 under autocast
    separate, joint = _pair("wgan-gp", "dcgan")
    real, fake = _batch(separate)
    out = []
    for m in (separate, joint):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = m.critic_loss(m.critic, real, fake.bfloat16())
        loss.backward()
        out.append(loss.detach().float())
    assert torch.isfinite(out[1])
    torch.testing.assert_close(out[1], out[0], rtol=2e-2, atol=2e-2)  # bf16 convolutions either way
