"""Small MLPs for 2-D toy data and MLP GANs on small digits.

Samples keep the image layout the rest of fastgan uses: 2-D points are (B, 2, 1, 1), 16 x 16
digits (B, 1, 16, 16). Every network flattens its input and reshapes its output, so a shape
is given as a tuple of positive ints (in_shape / out_shape, without the batch dimension).

    MLPGenerator    z (B, z_dim) -> [Linear -> [BatchNorm] -> ReLU] x depth -> Linear -> [tanh]
                      -> (B, *out_shape)
    MLPCritic       x (B, *in_shape) -> flatten -> [Linear -> LeakyReLU(0.2)] x depth -> Linear -> (B,)
    MLPAutoencoder  x -> flatten -> [Linear -> LeakyReLU(0.2)] x depth -> Linear (code_dim)
                      -> [Linear -> LeakyReLU(0.2)] x depth -> Linear -> (B, *in_shape)

Three hidden layers follow the toy networks of WGAN-GP's released code (Gulrajani et al.
2017, arXiv:1704.00028, 8 Gaussians / 25 Gaussians / Swiss roll; 512 ReLU units there);
hidden=256 is this library's smaller default, not a paper value. The critic's LeakyReLU(0.2)
is DCGAN's slope (Radford et al. 2015, sec. 3). The critic and the autoencoder have no
normalization, so a sample's score depends on that sample alone, and every op is twice
differentiable (the gradient penalty's double backward). The generator can put BatchNorm
after each hidden Linear (batchnorm=True, the Linear then without bias), as DCGAN's
generator does: "This proved critical to get deep generators to begin learning, preventing
the generator from collapsing all samples to a single point" (Radford et al. 2015, sec. 3).
The autoencoder has no output activation (EBGAN/BEGAN energies are reconstruction errors on
unbounded outputs).

Initialization: the generator without BatchNorm as in WGAN-GP's toy code (its ReLU layers
He-uniform, He et al. 2015, arXiv:1502.01852, the output layer Glorot-uniform, biases 0),
which keeps the spread of its output over z through the ReLUs; PyTorch's default Linear
init shrinks the variance ~6x per Linear + ReLU (at 3 layers the output hardly depends on z
at the start). With BatchNorm, which restores the spread itself, and in the critic and the
autoencoder: PyTorch's default. (Measured, tests/models: the toy init took the ring's WGAN
from hq 0.656 to 0.763, seed 0; on the BatchNorm generator of the digits it made the 0 rare,
9 classes at 1,200 steps for seeds 1 and 2, where the default init gives all 10 at 1,000 and
1,500 steps.)
"""
import math

from torch import nn

from fastgan.nn._shapes import sample_batch, z_batch
from fastgan.nn.autoencoder import Autoencoder

NEGATIVE_SLOPE = 0.2  # Radford et al. 2015, sec. 3


def _check_shape(cls, name, shape):
    """The shape as a tuple of positive ints, or ValueError naming `name`."""
    ok = isinstance(shape, (tuple, list)) and len(shape) > 0 and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    if not ok:
        raise ValueError(f"{cls}: {name} must be a non-empty tuple of positive ints, e.g. (2, 1, 1), "
                         f"got {shape!r}")
    return tuple(int(s) for s in shape)


def _check_positive_int(cls, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{cls}: {name} must be a positive int, got {value!r}")


def _stack(n_in, hidden, depth, act, batchnorm=False):
    """[Linear -> [BatchNorm1d] -> act] x depth, n_in -> hidden -> ... -> hidden (the Linear
    without bias before a BatchNorm, whose shift replaces it)."""
    layers = []
    for i in range(depth):
        layers.append(nn.Linear(n_in if i == 0 else hidden, hidden, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(act())
    return layers


def _init_like_wgan_gp_toy(net):
    """WGAN-GP's toy generator init: the ReLU layers He-uniform, the last Linear
    Glorot-uniform, every bias 0."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for m in linears[:-1]:
        nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
    nn.init.xavier_uniform_(linears[-1].weight)
    for m in linears:
        nn.init.zeros_(m.bias)


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> samples (B, *out_shape); in [-1, 1] with tanh=True, unbounded otherwise.
    Also takes z as (B, z_dim, 1, 1) or (z_dim,) (a batch of one).
    batchnorm=True: BatchNorm after each hidden Linear (a sample's output then depends on its
    batch in training mode, as in DCGAN's generator)."""

    def __init__(self, z_dim, out_shape, hidden=256, depth=3, tanh=False, batchnorm=False):
        cls = "MLPGenerator"
        _check_positive_int(cls, "z_dim", z_dim)
        out_shape = _check_shape(cls, "out_shape", out_shape)
        _check_positive_int(cls, "hidden", hidden)
        _check_positive_int(cls, "depth", depth)
        if not isinstance(batchnorm, bool):
            raise ValueError(f"{cls}: batchnorm must be True or False, got {batchnorm!r}")
        super().__init__()
        self.out_shape = out_shape
        self.z_dim = z_dim
        layers = _stack(z_dim, hidden, depth, nn.ReLU, batchnorm=batchnorm)
        layers.append(nn.Linear(hidden, math.prod(self.out_shape)))
        if tanh:
            layers.append(nn.Tanh())
        layers.append(nn.Unflatten(1, self.out_shape))
        self.net = nn.Sequential(*layers)
        if not batchnorm:  # with BatchNorm: PyTorch's default (module docstring)
            _init_like_wgan_gp_toy(self.net)

    def forward(self, z):
        return self.net(z_batch(self, z))


class MLPCritic(nn.Module):
    """x (B, *in_shape) -> one score per sample, shape (B,); one unbatched sample (in_shape)
    -> (1,). A batch of another shape with as many values per sample (points (B, 2) for
    in_shape (2, 1, 1), say) is flattened alike. No sigmoid."""

    def __init__(self, in_shape, hidden=256, depth=3):
        cls = "MLPCritic"
        in_shape = _check_shape(cls, "in_shape", in_shape)
        _check_positive_int(cls, "hidden", hidden)
        _check_positive_int(cls, "depth", depth)
        super().__init__()
        self.in_shape = in_shape
        layers = [nn.Flatten(1)] + _stack(math.prod(in_shape), hidden, depth,
                                          lambda: nn.LeakyReLU(NEGATIVE_SLOPE))
        layers += [nn.Linear(hidden, 1), nn.Flatten(0)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(sample_batch(self, x, self.in_shape, any_layout=True))


class MLPAutoencoder(Autoencoder):
    """x (B, *in_shape) -> reconstruction (B, *in_shape), or (reconstruction, code (B, code_dim))
    with return_code=True. code_dim defaults to hidden."""

    def __init__(self, in_shape, hidden=256, depth=2, code_dim=None):
        cls = "MLPAutoencoder"
        in_shape = _check_shape(cls, "in_shape", in_shape)
        _check_positive_int(cls, "hidden", hidden)
        _check_positive_int(cls, "depth", depth)
        code_dim = hidden if code_dim is None else code_dim
        _check_positive_int(cls, "code_dim", code_dim)
        super().__init__()
        self.in_shape, self.code_dim = in_shape, code_dim
        self.sample_shape = in_shape
        n = math.prod(in_shape)
        act = lambda: nn.LeakyReLU(NEGATIVE_SLOPE)  # noqa: E731
        self.encoder = nn.Sequential(nn.Flatten(1), *_stack(n, hidden, depth, act),
                                     nn.Linear(hidden, code_dim))
        self.decoder = nn.Sequential(*_stack(code_dim, hidden, depth, act), nn.Linear(hidden, n),
                                     nn.Unflatten(1, in_shape))
