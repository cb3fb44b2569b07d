"""An ``image_url``'s bytes, read under a byte cap that holds before anything is read.

- ``data:`` URLs: the decoded length is computed from the base64 length before decoding;
- ``file://`` URLs: only regular files below the allowed folder (after following symlinks), opened without
  blocking (a FIFO would block a plain ``open`` forever), sized with ``fstat`` before the first read, and
  read no further than the cap;
- ``http(s)://``: the declared ``Content-Length`` is checked, then the body is streamed with the same cap.

Every refusal is a 400 ``APIError`` whose ``code`` says why.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from zwz.server.api.errors import APIError

__all__ = ["media_error", "read_data_url", "read_file_url", "read_remote"]

_READ_CHUNK = 1024 * 1024


def media_error(message: str, code: str = "invalid_image") -> APIError:
    """The 400 every refused image gets (``param`` is the request's messages, where the image sits)."""
    return APIError(400, message, param="messages", code=code)


def _too_large(size: int, max_bytes: int) -> APIError:
    return media_error(f"image is {size} bytes, over the limit of {max_bytes}", "image_too_large")


def read_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of ``data:image/...;base64,<data>``; the size is refused before anything is decoded."""
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise media_error("data URL must look like data:image/png;base64,<data>", "invalid_data_url")
    mime = header[5:].split(";")[0]
    if mime and not mime.startswith("image/"):
        raise media_error(f"data URL media type {mime!r} is not an image", "unsupported_format")
    # Every 4 base64 characters carry 3 bytes, less one per "=" of padding (RFC 4648 section 4).
    decoded_size = len(payload) // 4 * 3 - payload[-2:].count("=")
    if decoded_size > max_bytes:
        raise _too_large(decoded_size, max_bytes)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise media_error("image data is not valid base64", "invalid_base64") from None


def _file_path(url: str) -> str:
    """The local path a ``file://`` URL names, percent-decoding undone; a 400 for one no file can have."""
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise media_error(f"file:// URL must name a path on this server (file:///path), not host {parsed.netloc!r}",
                          "invalid_file_url")
    # surrogateescape keeps file names that are not UTF-8 readable, as the OS sees them.
    path = unquote(parsed.path, errors="surrogateescape")
    if not path.startswith("/") or any(ord(ch) < 0x20 or ch == "\x7f" for ch in path):
        raise media_error("file:// URL path must be absolute and free of control characters (NUL included)",
                          "invalid_file_url")
    return path


def read_file_url(url: str, allowed_dir: str | None, max_bytes: int) -> bytes:
    """The bytes of a ``file://`` image below ``allowed_dir``; never blocks, never reads past ``max_bytes``."""
    if not allowed_dir:
        raise media_error("file:// image URLs are disabled on this server", "local_media_disabled")
    raw = _file_path(url)
    try:
        root = Path(allowed_dir).resolve()
        path = Path(raw).resolve()  # follows symlinks and "..", so the check below sees the real target
    except (OSError, RuntimeError, ValueError) as exc:  # too long a name, a symlink loop
        raise media_error(f"file:// URL path cannot be resolved: {exc}", "invalid_file_url") from None
    if not path.is_relative_to(root):
        raise media_error("file:// image URL is outside the folder this server allows", "local_media_forbidden")
    try:
        # O_NOFOLLOW: a symlink swapped in after resolve() is refused; O_NONBLOCK: opening a FIFO returns at once.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise media_error(f"no such image file: {path.name}", "image_not_found") from None
    except OSError as exc:
        raise media_error(f"cannot open image file {path.name}: {exc.strerror}", "image_unreadable") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a directory, FIFO or device node: nothing to read an image from
            raise media_error(f"{path.name} is not a regular file", "invalid_file_url")
        if info.st_size > max_bytes:  # known from the inode: not one byte read
            raise media_error(f"image file is {info.st_size} bytes, over the limit of {max_bytes}", "image_too_large")
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as file:
            return _read_capped(file, max_bytes)
    except OSError as exc:
        raise media_error(f"cannot read image file {path.name}: {exc.strerror}", "image_unreadable") from None
    finally:
        os.close(fd)


def _read_capped(file: BinaryIO, max_bytes: int) -> bytes:
    """Read to EOF, refusing (having read at most ``max_bytes + 1`` bytes) a file that grew past the cap."""
    parts, size = [], 0
    while chunk := file.read(min(_READ_CHUNK, max_bytes + 1 - size)):
        parts.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise media_error(f"image is over the limit of {max_bytes} bytes", "image_too_large")
    return b"".join(parts)


def read_remote(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """GET ``url`` (redirects followed), refusing a declared or streamed size over ``max_bytes``."""
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(int(declared), max_bytes)
            parts, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise media_error(f"remote image is over the limit of {max_bytes} bytes", "image_too_large")
                parts.append(chunk)
    except httpx.HTTPError as exc:
        raise media_error(f"could not fetch image: {exc}", "image_fetch_failed") from None
    except httpx.InvalidURL as exc:  # not an HTTPError: raised for a URL httpx cannot even parse
        raise media_error(f"invalid image URL: {exc}", "image_fetch_failed") from None
    return b"".join(parts)
