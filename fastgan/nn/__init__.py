"""Modules built on fastgan.ops (fused generator/critic blocks, critic activations).

Empty until the fused-block and gradient-penalty work lands."""
