"""Modules built on fastgan.ops: critic activations fused to second order, critics, and
fused Conv -> BatchNorm -> ReLU/LeakyReLU blocks."""
from fastgan.nn.activation import BiasLeakyReLU
from fastgan.nn.blocks import ConvBNLeakyReLU, ConvTransposeBNReLU, fused_conv_bn_act
from fastgan.nn.dcgan import DCGANCritic, DCGANGenerator, dcgan_init_

__all__ = ["BiasLeakyReLU", "ConvBNLeakyReLU", "ConvTransposeBNReLU", "DCGANCritic", "DCGANGenerator", "dcgan_init_",
           "fused_conv_bn_act"]
