"""Make Qwen-VL processors work where torchvision is missing.

Why this exists: on CPU-only machines there is no usable torchvision wheel (the registry's build is
CUDA-linked), and transformers' Qwen-VL processors break without it: building one fails on the
video-processor class check, loading a saved one fails on the torchvision-only video processor, and vLLM
imports ``smart_resize`` from a torchvision-only module. Images never needed torchvision: transformers
ships a PIL image processor. So, only when transformers reports torchvision unavailable, this module

(a) accepts an image-only stand-in for the video processor (videos are refused with a clear error),
(b) lets the PIL image processor stand in for the torchvision one (including vLLM's import path),
(c) reaches subprocesses (vLLM workers) through a ``sitecustomize`` hook put on ``PYTHONPATH``.

Where torchvision is present, ``install()`` does nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SITE_HOOK_DIR = str(Path(__file__).with_name("_site_hook"))
_installed = False

# Qwen's video processor class names, by family; written into saved folders so that machines that do
# have torchvision load the real video processor from the same files.
_VIDEO_PROCESSOR_TYPE = {"qwen2_5_vl": "Qwen2VLVideoProcessor", "qwen3_vl": "Qwen3VLVideoProcessor"}


def torchvision_missing() -> bool:
    """True when transformers considers torchvision unavailable (the trigger for this layer)."""
    from transformers.utils import is_torchvision_available

    return not is_torchvision_available()


def is_installed() -> bool:
    return _installed


def install(*, reach_subprocesses: bool = True) -> bool:
    """Apply the compatibility patches if torchvision is missing; return whether they are active."""
    global _installed
    if _installed:
        return True
    if not torchvision_missing():
        return False
    _patch_processor_class_check()
    _patch_auto_video_processor()
    _provide_torchvision_free_image_module()
    if reach_subprocesses:
        _export_site_hook()
    _installed = True
    logger.debug("torchvision is missing: image-only Qwen-VL processor compatibility layer active")
    return True


def _image_only_video_processor_class():
    from transformers.video_processing_utils import BaseVideoProcessor

    class ImageOnlyVideoProcessor(BaseVideoProcessor):
        """Carries the patch settings that processors and vLLM read; refuses real videos."""

        def __init__(
            self,
            patch_size: int = 14,
            temporal_patch_size: int = 2,
            merge_size: int = 2,
            min_pixels: int | None = None,
            max_pixels: int | None = None,
            video_processor_type: str = "Qwen2VLVideoProcessor",
            **kwargs: Any,
        ) -> None:
            super().__init__()
            self.patch_size = patch_size
            self.temporal_patch_size = temporal_patch_size
            self.merge_size = merge_size
            self.min_pixels = min_pixels
            self.max_pixels = max_pixels
            self.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
            self._saved_type = video_processor_type

        def __call__(self, *args: Any, **kwargs: Any):
            raise ValueError("video inputs need torchvision, which is not installed on this machine")

        preprocess = __call__

        def to_dict(self) -> dict[str, Any]:
            return {
                "patch_size": self.patch_size,
                "temporal_patch_size": self.temporal_patch_size,
                "merge_size": self.merge_size,
                "min_pixels": self.min_pixels,
                "max_pixels": self.max_pixels,
                "size": self.size,
                "video_processor_type": self._saved_type,
            }

    return ImageOnlyVideoProcessor


_VIDEO_CLS = None


def image_only_video_processor(**settings: Any):
    global _VIDEO_CLS
    if _VIDEO_CLS is None:
        _VIDEO_CLS = _image_only_video_processor_class()
    return _VIDEO_CLS(**settings)


def _patch_processor_class_check() -> None:
    from transformers.processing_utils import ProcessorMixin
    from transformers.video_processing_utils import BaseVideoProcessor

    original = ProcessorMixin.check_argument_for_proper_class

    def check_argument_for_proper_class(self, argument_name, argument):
        # The original looks the expected class up in a mapping that is a torchvision placeholder here.
        if argument_name == "video_processor" and isinstance(argument, BaseVideoProcessor):
            return type(argument)
        return original(self, argument_name, argument)

    ProcessorMixin.check_argument_for_proper_class = check_argument_for_proper_class


def _patch_auto_video_processor() -> None:
    # The top-level name may be a torchvision placeholder; patch the real class in its module.
    from transformers.models.auto.video_processing_auto import AutoVideoProcessor

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = Path(pretrained_model_name_or_path)
        settings: dict[str, Any] = {}
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            if (folder / name).is_file():
                data = json.loads((folder / name).read_text())
                settings = {k: data[k] for k in ("patch_size", "temporal_patch_size", "merge_size") if k in data}
                settings["video_processor_type"] = data.get("video_processor_type", "Qwen2VLVideoProcessor")
                break
        return image_only_video_processor(**settings)

    AutoVideoProcessor.from_pretrained = classmethod(from_pretrained)


def _provide_torchvision_free_image_module() -> None:
    """Serve ``qwen2_vl.image_processing_qwen2_vl`` (imported by vLLM) from the PIL implementation."""
    name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
    try:
        __import__(name)
        return
    except ImportError:
        pass
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    shim = types.ModuleType(name, "PIL stand-in for the torchvision Qwen2-VL image processor (zwz.compat)")
    shim.smart_resize = pil.smart_resize
    shim.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
    shim.Qwen2VLImageProcessorPil = pil.Qwen2VLImageProcessorPil
    sys.modules[name] = shim
    import transformers.models.qwen2_vl as parent

    parent.image_processing_qwen2_vl = shim


def _export_site_hook() -> None:
    """Put the ``sitecustomize`` hook first on PYTHONPATH so child Python processes install this too."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _SITE_HOOK_DIR not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([_SITE_HOOK_DIR, *parts])


def make_processor(family: str, image_processor, tokenizer, chat_template: str):
    """Build the Qwen-VL processor for ``family`` from its parts, with or without torchvision."""
    install()
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor as processor_cls
    else:
        from transformers import Qwen3VLProcessor as processor_cls
    settings = dict(
        patch_size=image_processor.patch_size,
        temporal_patch_size=image_processor.temporal_patch_size,
        merge_size=image_processor.merge_size,
    )
    if torchvision_missing():
        video = image_only_video_processor(video_processor_type=_VIDEO_PROCESSOR_TYPE[family], **settings)
    else:  # pragma: no cover - exercised only on machines with torchvision
        import transformers

        video = getattr(transformers, _VIDEO_PROCESSOR_TYPE[family])(**settings)
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video, chat_template=chat_template)
