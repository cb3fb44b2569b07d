"""The HTTP side of ``zwz eval``: one OpenAI-compatible endpoint and its zwz extensions.

Per-item failures raise :class:`RequestFailed` (the item is recorded with its error and retried by the next
run); failures that make every further request pointless (wrong key, unknown model, an endpoint that lacks
a zwz extension the run asked for, a server that went away) raise :class:`EndpointError`, which stops the run.

    from zwz.endpoint import image_data_url, user_message

    async with Endpoint("http://127.0.0.1:8000", "qwen3_vl") as ep:
        await ep.preflight()
        reply = await ep.chat({"messages": [user_message([image_data_url(item.image)], item.prompt)]})
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from zwz.defaults import REQUEST_TIMEOUT_S
from zwz.endpoint import RETRY_STATUS, api_base, auth_headers, error_message, server_root

__all__ = ["Endpoint", "EndpointError", "EvalError", "RequestFailed"]


class EvalError(ValueError):
    """A run cannot start or go on; the message is one line for the CLI."""


class EndpointError(EvalError):
    """The endpoint cannot serve this run at all (stops it; already written predictions stay)."""


class RequestFailed(Exception):
    """One item's request failed; it is recorded with this message and retried by the next run."""


class Endpoint:
    """An async client for one endpoint: retries transient failures, stops after repeated connection loss."""

    def __init__(self, base_url: str, model: str | None = None, *, api_key: str | None = None,
                 timeout: float = REQUEST_TIMEOUT_S, max_retries: int = 2, max_consecutive_failures: int = 8,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_base = api_base(base_url)
        self.root = server_root(base_url)
        self.model = model
        self.max_retries = max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self._client = httpx.AsyncClient(timeout=timeout, headers=auth_headers(api_key), transport=transport)
        self._failures_in_a_row = 0

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def preflight(self) -> dict[str, Any]:
        """Check reachability, key and model (picking the only served one when none was named).

        Returns ``/health`` where the endpoint has zwz's (``random_weights`` and so on), else ``{}``.
        """
        url = self.api_base + "/models"
        try:
            resp = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise EndpointError(f"cannot reach {self.root}: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 401:
            raise EndpointError(f"{self.root} refused the API key (HTTP 401); pass --api-key")
        if resp.status_code != 200:
            raise EndpointError(f"GET {url} returned {error_message(resp, status=resp.status_code)}")
        try:
            served = [m["id"] for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise EndpointError(f"GET {url} did not return an OpenAI model list") from None
        if self.model is None:
            if len(served) != 1:
                raise EndpointError(f"{self.root} serves {len(served)} models ({', '.join(served)}); "
                                    "pick one with --model")
            self.model = served[0]
        elif self.model not in served:
            raise EndpointError(f"unknown model {self.model!r} at {self.root}; "
                                f"it serves: {', '.join(served) or 'none'}")
        try:
            health = await self._client.get(self.root + "/health")
            is_json = "json" in health.headers.get("content-type", "")
            return health.json() if health.status_code == 200 and is_json else {}
        except (httpx.HTTPError, ValueError):
            return {}

    async def check_attention_endpoint(self) -> None:
        """The client-side attention_zoom mode needs zwz's POST /v1/zoom/attention (an empty body gets a 400)."""
        try:
            resp = await self._client.post(self.api_base + "/zoom/attention", json={})
        except httpx.HTTPError as exc:
            raise EndpointError(f"cannot reach {self.root}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (404, 405):
            raise EndpointError(f"the attention_zoom mode needs a zwz server: {self.root} has no POST "
                                "/v1/zoom/attention (drop the mode, or serve with `zwz serve`)")

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/chat/completions (non-streaming) with ``model`` filled in; the parsed reply."""
        return await self._post("/chat/completions", {"model": self.model, **body})

    async def attention(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/zoom/attention (zwz servers)."""
        return await self._post("/zoom/attention", {"model": self.model, **body})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.api_base + path
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 10.0))
            try:
                resp = await self._client.post(url, json=body)
            except httpx.TimeoutException as exc:  # a retry of a too-slow request would only be slow again
                raise RequestFailed(f"{path}: timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            self._failures_in_a_row = 0
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    raise RequestFailed(f"{path}: reply is not JSON: {resp.text[:200]!r}") from None
            message = error_message(resp, status=resp.status_code)
            if resp.status_code == 401:
                raise EndpointError(f"{self.root} refused the API key ({message})")
            if resp.status_code == 404 and "model" in message.lower():
                raise EndpointError(f"{self.root}: {message}")
            if resp.status_code == 400 and "mm_processor_kwargs" in message and "mm_processor_kwargs" in body:
                # vLLM refuses per-request processor kwargs unless started with --trust-request-mm-kwargs.
                raise EndpointError(f"{self.root} refuses the per-request pixel budget ({message}); drop "
                                    "--max-pixels, or start vLLM with --trust-request-mm-kwargs")
            if resp.status_code not in RETRY_STATUS:
                raise RequestFailed(f"{path}: {message}")
            last = message
        if not last.startswith("HTTP"):
            self._failures_in_a_row += 1
            if self._failures_in_a_row >= self.max_consecutive_failures:
                raise EndpointError(f"lost {self.root}: {self._failures_in_a_row} requests in a row failed ({last})")
        raise RequestFailed(f"{path}: failed after {self.max_retries + 1} attempt(s): {last}")
