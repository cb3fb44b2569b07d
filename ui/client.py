"""The UI's side of the zwz HTTP API: chat completions in each mode and relative-attention maps.

Only httpx: the UI never loads a model. Every failure becomes a :class:`ServerError` whose message is one
line a person can act on (the server is down, the key is wrong, the server refused the image, ...).

    from zwz.endpoint import image_data_url

    async with ZwzClient("http://127.0.0.1:8000") as client:
        reply = await client.chat([image_data_url(image)], "What is written on the sign?", max_tokens=64)
        reply.text, reply.latency_ms, reply.body["usage"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from zwz.defaults import REQUEST_TIMEOUT_S
from zwz.endpoint import auth_headers, error_message, server_root, user_message

__all__ = ["Reply", "ServerError", "ZwzClient"]


class ServerError(RuntimeError):
    """A request to the zwz server failed; the message is one line for the UI."""


@dataclass
class Reply:
    """A successful response: its JSON body and the wall time of the HTTP call."""

    body: dict[str, Any]
    latency_ms: float

    @property
    def text(self) -> str:
        """The assistant message of a chat completion ('' when it has none).

        >>> Reply({"choices": [{"message": {"content": "4"}}]}, 1.0).text, Reply({}, 1.0).text
        ('4', '')
        """
        try:
            return self.body["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""


class ZwzClient:
    """Async client of one zwz server (``zwz serve``). Use as ``async with``; one instance per event loop."""

    def __init__(self, base_url: str, api_key: str | None = None, *, model: str | None = None,
                 timeout: float = REQUEST_TIMEOUT_S):
        self.root = server_root(base_url)
        self.api_key = api_key or None
        self.model = model
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.root, headers=auth_headers(self.api_key), timeout=timeout)

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
        body = {"model": await self.model_name(), "messages": [user_message(image_urls, question)],
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
    if resp.status_code == 401:
        return f"the server at {root} refused the API key (HTTP 401): pass --api-key or set ZWZ_API_KEY"
    if resp.status_code == 404 and "/v1/zoom" in str(resp.url):
        return f"the server at {root} has no zwz attention endpoint (HTTP 404): is it a zwz server?"
    return f"the server answered {error_message(resp, status=resp.status_code)}"
