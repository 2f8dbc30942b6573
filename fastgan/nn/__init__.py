"""Modules built on fastgan.ops: critic activations fused to second order, a Conv2d whose
gradient-penalty double backward skips a pass of zeros, critics, and
fused Conv -> BatchNorm -> ReLU/LeakyReLU blocks; the models' networks (DCGAN, the WGAN-GP
ResNet, EBGAN's and BEGAN's autoencoders, MLPs for toy data)."""
from fastgan.nn.activation import BiasLeakyReLU
from fastgan.nn.autoencoder import BEGANAutoencoder, BEGANDecoder, BEGANEncoder, EBGANDiscriminator
from fastgan.nn.blocks import ConvBNLeakyReLU, ConvTransposeBNReLU, fused_conv_bn_act
from fastgan.nn.conv import Conv2d
from fastgan.nn.dcgan import DCGANCritic, DCGANGenerator, dcgan_init_
from fastgan.nn.mlp import MLPAutoencoder, MLPCritic, MLPGenerator
from fastgan.nn.resnet import ResNetCritic, ResNetGenerator

__all__ = ["BEGANAutoencoder", "BEGANDecoder", "BEGANEncoder", "BiasLeakyReLU", "Conv2d", "ConvBNLeakyReLU",
           "ConvTransposeBNReLU", "DCGANCritic", "DCGANGenerator", "EBGANDiscriminator", "MLPAutoencoder",
           "MLPCritic", "MLPGenerator", "ResNetCritic", "ResNetGenerator", "dcgan_init_", "fused_conv_bn_act"]
