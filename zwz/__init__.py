"""zwz: serve Zooming-without-Zooming vision-language models."""

from zwz.compat import hide_mismatched_torch_extensions as _hide_mismatched_torch_extensions

__version__ = "0.1.0"

# Before anything imports transformers, which probes torchvision once and caches the answer.
_hide_mismatched_torch_extensions()
