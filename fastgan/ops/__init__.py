"""fastgan's ops. Each takes backend= ("auto", "triton", "cuda", "cpp", "reference");
None means the default set by fastgan.set_backend / FASTGAN_BACKEND."""
from fastgan.ops.batch_norm_act import batch_norm_act, batch_norm_act_reference
from fastgan.ops.began_loss import began_loss, began_loss_reference
from fastgan.ops.bias_leaky_relu import bias_leaky_relu, bias_leaky_relu_reference
from fastgan.ops.clip_weights import clip_weights_, clip_weights_reference
from fastgan.ops.gather_images import gather_images, gather_images_reference
from fastgan.ops.gradient_penalty import gradient_penalty, penalty_at, penalty_points
from fastgan.ops.penalty import penalty_from_grad, penalty_reference
from fastgan.ops.rmsprop_clip import rmsprop_clip_, rmsprop_clip_reference
from fastgan.ops.sample_norm_act import sample_norm_act, sample_norm_act_reference
from fastgan.ops.sampling import (draw_seed, interpolate, interpolate_reference, perturb,
                                  perturb_reference)

__all__ = ["batch_norm_act", "batch_norm_act_reference", "began_loss", "began_loss_reference",
           "bias_leaky_relu", "bias_leaky_relu_reference", "clip_weights_",
           "clip_weights_reference", "draw_seed", "gather_images", "gather_images_reference",
           "gradient_penalty", "penalty_at", "penalty_points", "interpolate", "interpolate_reference", "penalty_from_grad",
           "penalty_reference", "perturb", "perturb_reference", "rmsprop_clip_",
           "rmsprop_clip_reference", "sample_norm_act", "sample_norm_act_reference"]
