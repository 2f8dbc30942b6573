"""Modules built on fastgan.ops: critic activations fused to second order, critics."""
from fastgan.nn.activation import BiasLeakyReLU
from fastgan.nn.dcgan import DCGANCritic, dcgan_init_

__all__ = ["BiasLeakyReLU", "DCGANCritic", "dcgan_init_"]
