"""zwz.kernels: Triton kernels, each with a plain-torch reference beside it.

Triton is optional: it is imported only when a Triton path runs (``zwz.kernels.image_attention``).
"""

from .image_attention_api import image_span_attention, image_span_attention_torch
from .image_attention_ref import image_span_attention_reference

__all__ = ["image_span_attention", "image_span_attention_reference", "image_span_attention_torch"]
