"""Turning an ``image_url`` into a PIL image, safely.

Base64 data URLs always work. ``file://`` works only below a folder the operator allows, and http(s) only
when the operator turns remote fetching on: by default the server reads and fetches nothing. Image size
is checked from the header before any pixel is decoded, so decompression bombs cost nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, UnidentifiedImageError

from zwz.server.api.errors import APIError

SUPPORTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


@dataclass
class MediaPolicy:
    max_image_pixels: int = 64_000_000
    max_image_bytes: int = 32 * 1024 * 1024
    allowed_local_dir: str | None = None
    allow_remote: bool = False
    remote_timeout_s: float = 10.0


def _bad(message: str, code: str = "invalid_image") -> APIError:
    return APIError(400, message, param="messages", code=code)


def load_image(url: str, policy: MediaPolicy) -> Image.Image:
    """Decode an OpenAI ``image_url.url`` to an RGB image or raise a 400 ``APIError`` saying why."""
    if url.startswith("data:"):
        data = _from_data_url(url)
    elif url.startswith("file://"):
        data = _from_file_url(url, policy)
    elif url.startswith(("http://", "https://")):
        data = _from_remote(url, policy)
    else:
        raise _bad("image_url must be a data: URL (base64), or file:// / http(s):// where the server allows it",
                   "unsupported_url")
    if len(data) > policy.max_image_bytes:
        raise _bad(f"image is {len(data)} bytes, over the limit of {policy.max_image_bytes}", "image_too_large")
    return _decode(data, policy)


def _from_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise _bad("data URL must look like data:image/png;base64,<data>", "invalid_data_url")
    mime = header[5:].split(";")[0]
    if mime and not mime.startswith("image/"):
        raise _bad(f"data URL media type {mime!r} is not an image", "unsupported_format")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("image data is not valid base64", "invalid_base64") from None


def _from_file_url(url: str, policy: MediaPolicy) -> bytes:
    if not policy.allowed_local_dir:
        raise _bad("file:// image URLs are disabled on this server", "local_media_disabled")
    root = Path(policy.allowed_local_dir).resolve()
    path = Path(unquote(urlparse(url).path)).resolve()
    if not path.is_relative_to(root):
        raise _bad("file:// image URL is outside the folder this server allows", "local_media_forbidden")
    if not path.is_file():
        raise _bad(f"no such image file: {path.name}", "image_not_found")
    return path.read_bytes()


def _from_remote(url: str, policy: MediaPolicy) -> bytes:
    if not policy.allow_remote:
        raise _bad("http(s) image URLs are disabled on this server; send the image as a base64 data URL",
                   "remote_media_disabled")
    import httpx

    try:
        with httpx.stream("GET", url, timeout=policy.remote_timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > policy.max_image_bytes:
                    raise _bad(f"remote image is over {policy.max_image_bytes} bytes", "image_too_large")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise _bad(f"could not fetch image: {exc}", "image_fetch_failed") from None
    return b"".join(chunks)


def _decode(data: bytes, policy: MediaPolicy) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below decides; PIL's built-in warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise _bad("image has far too many pixels (decompression bomb refused)", "image_too_large") from None
    except (UnidentifiedImageError, OSError):
        raise _bad("the data is not an image this server can read", "invalid_image") from None
    if image.format not in SUPPORTED_FORMATS:
        raise _bad(f"image format {image.format} is not supported (use {', '.join(sorted(SUPPORTED_FORMATS))})",
                   "unsupported_format")
    width, height = image.size
    if width * height > policy.max_image_pixels:
        raise _bad(f"image is {width}x{height} = {width * height} pixels, over the limit of "
                   f"{policy.max_image_pixels}", "image_too_large")
    try:
        image.load()
        # convert() copies even when the mode is already RGB (5 MB for a 1344 px photo): skip it then.
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _bad("the image data is truncated or corrupt", "invalid_image") from None
