"""SAM3's image preprocessing without torchvision, with the same math as transformers' ``Sam3ImageProcessor``.

Why this exists: transformers' ``Sam3ImageProcessor`` is torchvision-only (its module imports
``torchvision.ops.batched_nms`` and its backend resizes with ``torchvision.transforms.v2``), SAM3 has no PIL
image processor, and CPU-only machines have no usable torchvision. The steps below are the ones that
processor runs for SAM3's settings (transformers 5.19, ``image_processing_sam3.py`` and
``image_processing_backends.TorchvisionBackend``), written with plain torch:

1. ``convert_to_rgb`` (transformers' own function), then the PIL image as a uint8 (C, H, W) tensor;
2. resize to ``size`` (1008 x 1008, aspect ratio NOT kept) with bilinear, antialias on, align_corners off:
   torchvision calls ``torch.nn.functional.interpolate`` on the uint8 tensor directly where torch has a native
   uint8 kernel (CPU with AVX2/AVX512, or ARM), otherwise on a float32 copy that it rounds back to uint8;
3. fused rescale + normalise: ``(x - mean / rescale_factor) / (std / rescale_factor)`` in float32
   (mean = std = 0.5, rescale 1/255, so pixels land in [-1, 1]);
4. no padding (SAM3 turns SAM's padding off).

``tests/distill/sam3/test_preprocess.py`` checks the result against the real processor, run in a subprocess.

>>> from PIL import Image
>>> pixels, sizes = preprocess_images([Image.new("RGB", (40, 30), (255, 0, 0))], Sam3ImageSettings(32, 32))
>>> tuple(pixels.shape), sizes, round(pixels[0, 0, 0, 0].item(), 3), round(pixels[0, 1, 0, 0].item(), 3)
((1, 3, 32, 32), [(30, 40)], 1.0, -1.0)
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["Sam3ImageSettings", "preprocess_images", "resize_uint8"]

logger = logging.getLogger(__name__)

# PIL resampling codes (PIL.Image.Resampling / transformers' PILImageResampling) -> interpolate() modes.
# SAM3 uses bilinear; bicubic is the only other mode whose torchvision path is plain interpolate().
_MODES = {2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class Sam3ImageSettings:
    """The image processor settings SAM3 reads (defaults: ``Sam3ImageProcessor``'s class attributes)."""

    height: int = 1008
    width: int = 1008
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # IMAGENET_STANDARD_MEAN
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)  # IMAGENET_STANDARD_STD
    rescale_factor: float = 1 / 255
    resample: int = 2  # PIL BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    def __post_init__(self) -> None:
        if self.resample not in _MODES:
            raise ValueError(f"resample={self.resample} is not supported here (only PIL bilinear=2, bicubic=3)")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"size must be positive, got {self.height}x{self.width}")

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Sam3ImageSettings:
        """Settings from a saved image-processor dict (the keys ``Sam3ImageProcessor.to_dict`` writes)."""
        size = config.get("size") or {}
        values: dict[str, Any] = {}
        if size:
            if "height" not in size or "width" not in size:
                raise ValueError(f"SAM3 expects size {{height, width}}, got {size}")
            values.update(height=int(size["height"]), width=int(size["width"]))
        for key in ("image_mean", "image_std"):
            if config.get(key) is not None:
                value = config[key]
                values[key] = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3))
        for key, cast in (("rescale_factor", float), ("resample", int), ("do_resize", bool), ("do_rescale", bool),
                          ("do_normalize", bool)):
            if config.get(key) is not None:
                values[key] = cast(config[key])
        return cls(**values)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Sam3ImageSettings:
        """Settings saved in a SAM3 folder (``preprocessor_config.json``, or the ``image_processor`` entry of
        transformers 5's ``processor_config.json``); the defaults when the folder has neither."""
        folder = Path(folder)
        for name in ("preprocessor_config.json", "processor_config.json"):
            path = folder / name
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            if name == "processor_config.json":
                if "image_processor" not in data:
                    continue
                data = data["image_processor"]
            return cls.from_dict(data)
        logger.info("no image processor config in %s: using SAM3's default settings", folder)
        return cls()


def _native_uint8_kernel(mode: str, device: torch.device) -> bool:
    """Whether torchvision would hand the uint8 tensor to interpolate() as is (its
    ``_do_native_uint8_resize_on_cpu``): only on CPU; bilinear needs AVX2/AVX512 or ARM."""
    import torch

    if device.type != "cpu":
        return False
    if mode == "bilinear":
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in (
            "aarch64", "arm64")
    return mode == "bicubic"


def resize_uint8(image: torch.Tensor, height: int, width: int, resample: int = 2) -> torch.Tensor:
    """Resize a uint8 (C, H, W) tensor to (C, height, width) as torchvision's ``resize`` does (antialias on)."""
    import torch
    from torch.nn.functional import interpolate

    if image.dtype != torch.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 (C, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
    mode = _MODES[resample]
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batch = image.unsqueeze(0)  # (1, C, H, W)
    native = _native_uint8_kernel(mode, image.device)
    out = interpolate(batch if native else batch.float(), size=[height, width], mode=mode, align_corners=False,
                      antialias=True)
    if not native:
        if mode == "bicubic":  # bicubic overshoots; torchvision clamps before rounding
            out = out.clamp_(0, 255)
        out = out.round_().to(torch.uint8)
    return out[0]


def _to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 (C, H, W) view of its (H, W, C) pixels, as ``tvF.pil_to_tensor`` returns it."""
    import numpy as np
    import torch
    from transformers.image_transforms import convert_to_rgb

    rgb = convert_to_rgb(image)
    array = np.array(rgb, dtype=np.uint8, copy=True)  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W), channels-last memory like torchvision's


def preprocess_images(
    images: list[Image.Image], settings: Sam3ImageSettings | None = None
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """SAM3 ``pixel_values`` (B, 3, height, width) float32 and each image's original (height, width).

    Runs on the CPU, as ``Sam3Processor`` does by default; move the result to the model's device and dtype.
    """
    import torch

    settings = settings or Sam3ImageSettings()
    if not images:
        raise ValueError("preprocess_images needs at least one image")
    out, sizes = [], []
    for image in images:
        pixels = _to_uint8_tensor(image)  # (3, H, W) uint8
        sizes.append((int(pixels.shape[1]), int(pixels.shape[2])))
        if settings.do_resize:
            pixels = resize_uint8(pixels, settings.height, settings.width, settings.resample)
        if settings.do_normalize:
            scale = 1.0 / settings.rescale_factor if settings.do_rescale else 1.0
            # torchvision's fused rescale+normalise: mean and std scaled up, then (x - mean) / std in float32.
            mean = (torch.tensor(settings.image_mean) * scale).view(-1, 1, 1)  # (3, 1, 1)
            std = (torch.tensor(settings.image_std) * scale).view(-1, 1, 1)
            pixels = pixels.to(torch.float32).sub_(mean).div_(std)
        elif settings.do_rescale:
            pixels = pixels.to(torch.float32) * settings.rescale_factor
        else:
            pixels = pixels.to(torch.float32)
        out.append(pixels.contiguous())
    shapes = {tuple(p.shape) for p in out}
    if len(shapes) != 1:
        raise ValueError(f"images end up in different shapes {sorted(shapes)}; turn do_resize on to batch them")
    return torch.stack(out), sizes
