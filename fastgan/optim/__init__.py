"""Fused optimizers (RMSprop + weight clip, flat parameters).

Empty until the fused-optimizer work lands; the weight clip itself is fastgan.ops.clip_weights_."""
