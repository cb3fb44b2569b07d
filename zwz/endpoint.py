"""What every client of an OpenAI-compatible endpoint needs, in one place: URL forms, the auth header, image
data URLs, user turns, the error envelope and which statuses are worth a retry.

Used by the evaluation harness, the judge, the zoom agent's HTTP backend, the load test, the UI and the
distillation teachers, so a URL typed one way works everywhere and an error reads the same everywhere.

    base = api_base("127.0.0.1:8000")                       # 'http://127.0.0.1:8000/v1'
    headers = auth_headers(key)
    body = {"model": m, "messages": [user_message([image_data_url(img)], "What colour is the car?")]}
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # PIL is imported where an image is encoded, so scoring and rewards import without it
    from PIL import Image

__all__ = [
    "IMAGE_MIME",
    "RETRY_STATUS",
    "api_base",
    "auth_headers",
    "chat_url",
    "error_message",
    "image_data_url",
    "server_root",
    "user_message",
]

# Statuses worth another try: timeouts, conflicts, rate limits, overload and server-side failures.
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Image formats every OpenAI-compatible server we target decodes as sent; anything else is re-encoded as PNG.
IMAGE_MIME = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


def server_root(url: str) -> str:
    """The server's root URL from ``host:port``, ``http://host:port``, ``.../v1`` or ``.../v1/chat/completions``.

    >>> server_root("127.0.0.1:8000"), server_root("http://h:1/v1/"), server_root("http://h/v1/chat/completions")
    ('http://127.0.0.1:8000', 'http://h:1', 'http://h')
    """
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/chat/completions", "/v1"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def api_base(url: str) -> str:
    """The ``.../v1`` base (what the ``openai`` client calls ``base_url``) of any accepted URL form.

    >>> api_base("http://127.0.0.1:8000"), api_base("http://h/v1/"), api_base("h:1/v1/chat/completions")
    ('http://127.0.0.1:8000/v1', 'http://h/v1', 'http://h:1/v1')
    """
    return server_root(url) + "/v1"


def chat_url(url: str) -> str:
    """The chat-completions endpoint of any accepted URL form.

    >>> chat_url("http://h:1"), chat_url("http://h:1/v1/chat/completions")
    ('http://h:1/v1/chat/completions', 'http://h:1/v1/chat/completions')
    """
    return api_base(url) + "/chat/completions"


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer header for ``api_key`` (none when there is no key).

    >>> auth_headers("k"), auth_headers(None), auth_headers("")
    ({'Authorization': 'Bearer k'}, {}, {})
    """
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def image_data_url(source: Image.Image | Path | str | bytes, data: bytes | None = None) -> str:
    """A base64 data URL for an image.

    ``source`` is a PIL image, a file path or encoded bytes; ``data`` may give a PIL image's encoded file.
    Encoded files in a format the servers decode are sent as they are (no re-encoding, no quality loss);
    anything else is encoded as PNG (lossless).

    >>> from PIL import Image
    >>> image_data_url(Image.new("RGB", (2, 2)))[:22]
    'data:image/png;base64,'
    """
    from PIL import Image

    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif not isinstance(source, Image.Image):
        data = Path(source).read_bytes()
    fmt = None
    if data is not None:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            fmt = probe.format
    if data is None or fmt not in IMAGE_MIME:
        image = source if isinstance(source, Image.Image) else Image.open(io.BytesIO(data))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data, fmt = buf.getvalue(), "PNG"
    return f"data:image/{IMAGE_MIME[fmt]};base64," + base64.b64encode(data).decode()


def user_message(image_urls: list[str], text: str) -> dict[str, Any]:
    """One user turn: the images in order, then the text (Qwen-VL's usual layout).

    >>> user_message(["data:x"], "Hi")["content"][1]
    {'type': 'text', 'text': 'Hi'}
    """
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def error_message(body: bytes | str | Any, *, status: int | None = None) -> str:
    """The message of an OpenAI error envelope (or the start of a body that is not one), one line.

    ``body`` is the raw body or an object with ``.text`` (an ``httpx.Response``); with ``status`` the message
    is prefixed ``HTTP <status>: ``.

    >>> error_message(b'{"error": {"message": "the model \\'x\\' does not exist", "code": "model_not_found"}}')
    "the model 'x' does not exist"
    >>> error_message("Bad Gateway", status=502), error_message(b"", status=500)
    ('HTTP 502: Bad Gateway', 'HTTP 500: (empty body)')
    """
    if hasattr(body, "text") and not isinstance(body, (bytes, str)):
        body = body.text
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    try:
        error = json.loads(text)["error"]
        message = str(error.get("message") if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError, AttributeError):
        message = text[:200].strip() or "(empty body)"
    message = " ".join(message.split())
    return message if status is None else f"HTTP {status}: {message}"
