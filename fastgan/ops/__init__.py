"""fastgan's ops. Each takes backend= ("auto", "triton", "cuda", "cpp", "reference");
None means the default set by fastgan.set_backend / FASTGAN_BACKEND."""
from fastgan.ops.clip_weights import clip_weights_, clip_weights_reference
from fastgan.ops.rmsprop_clip import rmsprop_clip_, rmsprop_clip_reference

__all__ = ["clip_weights_", "clip_weights_reference", "rmsprop_clip_", "rmsprop_clip_reference"]
