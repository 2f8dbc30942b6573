"""GAN (Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio 2014,
"Generative Adversarial Nets", arXiv:1406.2661): the baseline the other models are
measured against.

Discriminator: minimize -log D(x) - log(1 - D(G(z))) (eq. 1); generator: the
non-saturating -log D(G(z)) (sec. 3: "rather than training G to minimize log(1 - D(G(z)))
we can train G to maximize log D(G(z))"), both on logits in the stable softplus form.

Networks: the paper's are fully connected (arch "mlp", the default here; LeakyReLU
instead of the paper's maxout units in the discriminator, no dropout). On images the MLP
generator has BatchNorm after its hidden layers (mlp_batchnorm, from DCGAN, Radford et al.
2015, sec. 3), which the 2014 paper predates: without it this generator's samples of the
built-in digits fell onto a few classes (onto one with PyTorch's default init;
tests/models/test_digits.py, case gan-no-bn). Arch "dcgan" puts the same losses on DCGAN's
convolutional networks, which makes it DCGAN with a named baseline. The paper trains with
SGD and momentum; fastgan uses DCGAN's Adam settings (Radford et al. 2015, sec. 4: lr 2e-4,
beta1 0.5), with which the comparison runs every model of this family.
"""
from fastgan.models.dcgan import DCGAN


class GAN(DCGAN):
    name = "gan"
    paper = "Goodfellow et al. 2014, arXiv:1406.2661"
    summary = "the original GAN: standard discriminator loss, non-saturating generator loss"
    archs = ("mlp", "dcgan")
    defaults = {
        "z_dim": 100,          # the comparison's z for every model (the paper names none)
        "g_width": 64,
        "d_width": 64,
        "mlp_hidden": 512,
        "mlp_depth": 3,
        "lr_g": 2e-4,          # DCGAN's Adam (Radford et al. 2015, sec. 4); the paper used SGD
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),
        "batch_size": 64,
        "n_critic": 1,         # Algorithm 1: k = 1 discriminator step per generator step
    }
