"""The UI's side of the zwz HTTP API: chat completions in each mode and relative-attention maps.

Only httpx: the UI never loads a model. Every failure becomes a :class:`ServerError` whose message is one
line a person can act on (the server is down, the key is wrong, the server refused the image, ...).

    async with ZwzClient("http://127.0.0.1:8000") as client:
        reply = await client.chat([image_data_url(image)], "What is written on the sign?", max_tokens=64)
        reply.text, reply.latency_ms, reply.body["usage"]
"""

from __future__ import annotations

import base64
import io
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["Reply", "ServerError", "ZwzClient", "image_data_url", "server_root"]

# Formats the server decodes as they are; anything else is re-encoded as PNG (lossless).
_MIME = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


class ServerError(RuntimeError):
    """A request to the zwz server failed; the message is one line for the UI."""


@dataclass
class Reply:
    """A successful response: its JSON body and the wall time of the HTTP call."""

    body: dict[str, Any]
    latency_ms: float

    @property
    def text(self) -> str:
        """The assistant message of a chat completion ('' when it has none)."""
        try:
            return self.body["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""


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


def image_data_url(image: Image.Image, data: bytes | None = None) -> str:
    """A base64 data URL: ``data`` (the image's encoded file) as it is when the server reads its format,
    else ``image`` encoded as PNG.

    >>> image_data_url(Image.new("RGB", (2, 2)))[:22]
    'data:image/png;base64,'
    """
    fmt = None
    if data is not None:
        with Image.open(io.BytesIO(data)) as probe:  # the header only
            fmt = probe.format
    if data is None or fmt not in _MIME:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data, fmt = buf.getvalue(), "PNG"
    return f"data:image/{_MIME[fmt]};base64," + base64.b64encode(data).decode()


class ZwzClient:
    """Async client of one zwz server (``zwz serve``). Use as ``async with``; one instance per event loop."""

    def __init__(self, base_url: str, api_key: str | None = None, *, model: str | None = None,
                 timeout: float = 300.0):
        self.root = server_root(base_url)
        self.api_key = api_key or None
        self.model = model
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(base_url=self.root, headers=headers, timeout=timeout)

    async def __aenter__(self) -> ZwzClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, json: dict[str, Any] | None = None) -> Reply:
        started = time.perf_counter()
        try:
            resp = await self._http.request(method, path, json=json)
        except httpx.ConnectError as exc:
            raise ServerError(f"cannot reach the zwz server at {self.root} ({_reason(exc)}); start one with "
                              "`zwz serve`, or run `zwz ui --with-server`") from None
        except httpx.TimeoutException:
            raise ServerError(f"the zwz server at {self.root} did not answer within {self.timeout:.0f} s") from None
        except httpx.HTTPError as exc:
            raise ServerError(f"request to {self.root}{path} failed: {_reason(exc)}") from None
        latency_ms = (time.perf_counter() - started) * 1e3
        if resp.status_code != 200:
            raise ServerError(_status_message(resp, self.root))
        try:
            body = resp.json()
        except ValueError:
            raise ServerError(f"{self.root}{path} answered with something that is not JSON: "
                              f"{resp.text[:200]!r}") from None
        return Reply(body, latency_ms)

    async def health(self) -> dict[str, Any]:
        """``GET /health``: engine, served model, whether its weights are random."""
        return (await self._request("GET", "/health")).body

    async def model_name(self) -> str:
        """The model to ask for: the one given, else the first one the server lists (asked once)."""
        if self.model is None:
            data = (await self._request("GET", "/v1/models")).body.get("data") or []
            if not data:
                raise ServerError(f"{self.root}/v1/models lists no model")
            self.model = str(data[0]["id"])
        return self.model

    async def chat(self, image_urls: list[str], question: str, *, max_tokens: int,
                   extra: dict[str, Any] | None = None) -> Reply:
        """One greedy chat completion: a user turn with the images, then the question; ``extra`` adds request
        fields (``zwz_mode``, ``zwz_agent``, ``mm_processor_kwargs``, ...)."""
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
        content.append({"type": "text", "text": question})
        body = {"model": await self.model_name(), "messages": [{"role": "user", "content": content}],
                "max_tokens": max_tokens, "temperature": 0.0, **(extra or {})}
        return await self._request("POST", "/v1/chat/completions", body)

    async def attention(self, image_url: str, question: str, *, box: list[float] | None = None,
                        layer: int | None = None, max_pixels: int | None = None) -> Reply:
        """``POST /v1/zoom/attention`` with the heatmap overlay."""
        body: dict[str, Any] = {"model": await self.model_name(), "image": image_url, "question": question,
                                "heatmap": True}
        if box is not None:
            body["box"] = list(box)
        if layer is not None:
            body["layer"] = layer
        if max_pixels:
            body["mm_processor_kwargs"] = {"max_pixels": max_pixels}
        return await self._request("POST", "/v1/zoom/attention", body)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:200] if text else type(exc).__name__


def _status_message(resp: httpx.Response, root: str) -> str:
    try:
        detail = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = resp.text[:200] or resp.reason_phrase
    if resp.status_code == 401:
        return f"the server at {root} refused the API key (HTTP 401): pass --api-key or set ZWZ_API_KEY"
    if resp.status_code == 404 and "/v1/zoom" in str(resp.url):
        return f"the server at {root} has no zwz attention endpoint (HTTP 404): is it a zwz server?"
    return f"the server answered HTTP {resp.status_code}: {detail}"
