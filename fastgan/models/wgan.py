"""WGAN (Arjovsky, Chintala, Bottou 2017, "Wasserstein GAN", arXiv:1701.07875).

Critic loss  D(G(z)) - D(x)       (Algorithm 1, the critic maximizes D(x) - D(G(z)))
Generator    -D(G(z))

No sigmoid. After every critic update, every critic parameter is clipped to [-c, c]
(Algorithm 1, line 7, c = 0.01): fastgan.optim.RMSpropClip does the RMSprop update and
the clip of all critic parameters in one fused kernel per dtype (no Python loop over
the parameters, the usual way). Both networks train with RMSprop, lr 5e-5 (Algorithm 1:
alpha = 0.00005; sec. 3: momentum-based optimizers were unstable), n_critic = 5, m = 64;
the generator's through the same fused kernel with no clip.

The paper's code runs 100 critic steps for each of the first 25 generator steps and on
every 500th one, to keep the critic near its optimum; critic_boost=True turns that on
(off by default: Algorithm 1 has a fixed n_critic).

Networks: DCGAN's, with BatchNorm in the critic as in the paper's experiments (the clip
covers the BatchNorm scales and shifts too: "every critic parameter").
"""
from fastgan.models.dcgan import DCGAN
from fastgan.optim.rmsprop_clip import RMSpropClip


class WGAN(DCGAN):
    name = "wgan"
    paper = "Arjovsky et al. 2017, arXiv:1701.07875"
    summary = "Wasserstein GAN: weight-clipped critic, RMSprop (fused RMSprop + clip)"
    archs = ("dcgan", "mlp")
    defaults = {
        "z_dim": 100,
        "g_width": 64,
        "d_width": 64,
        "lr_g": 5e-5,          # Algorithm 1: alpha = 0.00005
        "lr_d": 5e-5,
        "clip": 0.01,          # Algorithm 1: c = 0.01
        "batch_size": 64,      # Algorithm 1: m = 64
        "n_critic": 5,         # Algorithm 1: n_critic = 5
        "critic_boost": False,  # the paper's code: 100 critic steps early and every 500th step
    }
    critic_norm = "batch"
    BOOST_STEPS, BOOST_FIRST, BOOST_EVERY = 100, 25, 500

    def build_optimizers(self):
        c = self.config
        backend = None if c["fused"] else "reference"
        # the generator's RMSprop is the same fused kernel without the clip (torch.optim.
        # RMSprop's arithmetic; one launch; it takes a float16 GradScaler's flag on the device)
        return (RMSpropClip(self.generator.parameters(), lr=c["lr_g"], clip=None, backend=backend),
                RMSpropClip(self.critic.parameters(), lr=c["lr_d"], clip=c["clip"], backend=backend))

    def critic_steps(self, step):
        if self.config["critic_boost"] and (step < self.BOOST_FIRST or step % self.BOOST_EVERY == 0):
            return self.BOOST_STEPS
        return self.n_critic

    def critic_loss(self, critic, real, fake, *, scaler=None):
        d_real, d_fake = (s.float().mean() for s in self.critic_scores(critic, real, fake))
        loss = d_fake - d_real
        return loss, {"loss/d": loss.detach(), "wasserstein": (d_real - d_fake).detach()}

    def generator_loss(self, critic, fake):
        loss = -critic(fake).float().mean()
        return loss, {"loss/g": loss.detach()}
