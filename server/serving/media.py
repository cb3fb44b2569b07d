"""Turning an ``image_url`` into a PIL image, safely.

Base64 data URLs always work. ``file://`` works only below a folder the operator allows, and http(s) only
when the operator turns remote fetching on: by default the server reads and fetches nothing. Bytes are
capped before they are read (``media_sources``); the image's shape is checked from its header before any
pixel is decoded (pixel count, the processor's aspect-ratio limit, and, through ``admit``, the visual tokens
it will take), so decompression bombs and images the processor would refuse cost nothing. Whatever Pillow
refuses (a malformed chunk, a compressed text bomb, a truncated file) is a 400, never a 500.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from zwz.analytics.zoom.crop import MAX_ASPECT_RATIO
from zwz.server.serving.media_sources import media_error, read_data_url, read_file_url, read_remote

__all__ = ["MediaPolicy", "SUPPORTED_FORMATS", "check_shape", "decode_image", "load_image"]

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


@dataclass
class MediaPolicy:
    max_image_pixels: int = 64_000_000
    max_image_bytes: int = 32 * 1024 * 1024
    allowed_local_dir: str | None = None
    allow_remote: bool = False
    remote_timeout_s: float = 10.0


Admit = Callable[[tuple[int, int]], None]


def load_image(url: str, policy: MediaPolicy, admit: Admit | None = None) -> Image.Image:
    """Decode an OpenAI ``image_url.url`` to an RGB image or raise a 400 ``APIError`` saying why.

    ``admit(size)`` sees the header's (width, height) before decoding and may refuse the image (the request's
    visual-token budget, ``visual_budget.RequestVisualTokens.admit``).
    """
    if url.startswith("data:"):
        data = read_data_url(url, policy.max_image_bytes)
    elif url.startswith("file://"):
        data = read_file_url(url, policy.allowed_local_dir, policy.max_image_bytes)
    elif url.startswith(("http://", "https://")):
        if not policy.allow_remote:
            raise media_error("http(s) image URLs are disabled on this server; send the image as a base64 data "
                              "URL", "remote_media_disabled")
        data = read_remote(url, policy.max_image_bytes, policy.remote_timeout_s)
    else:
        raise media_error("image_url must be a data: URL (base64), or file:// / http(s):// where the server "
                          "allows it", "unsupported_url")
    return decode_image(data, policy, admit)


def check_shape(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse a (width, height) no Qwen-VL processor takes, or over the server's pixel limit.

    >>> check_shape((4000, 20), 64_000_000)   # 200:1 is the processor's limit, still allowed
    >>> check_shape((4000, 10), 64_000_000)
    Traceback (most recent call last):
    ...
    zwz.server.api.errors.APIError: image is 4000x10, an aspect ratio of 400:1; this model's processor takes at most 200:1
    """
    width, height = size
    if width < 1 or height < 1:
        raise media_error(f"image is {width}x{height}: it has no pixels", "invalid_image")
    if width * height > max_pixels:
        raise media_error(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
                          "image_too_large")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise media_error(f"image is {width}x{height}, an aspect ratio of {ratio:g}:1; this model's processor "
                          f"takes at most {MAX_ASPECT_RATIO}:1", "image_aspect_ratio")


def _refused(exc: Exception, what: str) -> Exception:
    logger.debug("image refused by Pillow (%s)", what, exc_info=exc)
    reason = str(exc)[:200] or type(exc).__name__
    return media_error(f"the data is not an image this server can read ({what}: {reason})", "invalid_image")


def decode_image(data: bytes, policy: MediaPolicy, admit: Admit | None = None) -> Image.Image:
    """Bytes -> an upright RGB image; the header's shape is checked (and ``admit``-ted) before decoding."""
    with warnings.catch_warnings():
        # Our own pixel limit (check_shape) decides; Pillow's bomb warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # the header (and PNG's text/ICC chunks), no pixels
        except Image.DecompressionBombError:
            raise media_error("image has far too many pixels (decompression bomb refused)",
                              "image_too_large") from None
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow refuses bad data with many types (OSError, ValueError,
            # SyntaxError, struct.error, EOFError, ...); each is the client's data, not our failure
            raise _refused(exc, "header") from None
        if image.format not in SUPPORTED_FORMATS:
            raise media_error(f"image format {image.format} is not supported "
                              f"(use {', '.join(sorted(SUPPORTED_FORMATS))})", "unsupported_format")
        check_shape(image.size, policy.max_image_pixels)
        if admit is not None:
            admit(image.size)  # an EXIF rotation swaps the sides, which changes neither count
        try:
            image.load()  # the first frame only, for an animated GIF/WebP
            ImageOps.exif_transpose(image, in_place=True)  # as a viewer shows it; in place: no 5 MB copy
            return _to_rgb(image)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - as above: truncated or corrupt pixel data, bad EXIF
            raise _refused(exc, "pixel data") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB: transparency over white (as vLLM and qwen-vl-utils do), 16-bit samples to their top byte."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG grey: convert() alone clips everything to 255
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # convert() copies even when the mode is already RGB (5 MB for a 1344 px photo): skip it then.
    return image if image.mode == "RGB" else image.convert("RGB")
