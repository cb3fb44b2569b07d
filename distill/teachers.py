"""Async clients for the teacher and student endpoints (any OpenAI-compatible server), with a call cache.

Calls go through one ``httpx.AsyncClient``, at most ``concurrency`` in flight per endpoint; only transport
errors, timeouts and the statuses in :data:`zwz.endpoint.RETRY_STATUS` are retried (exponential backoff);
other errors raise :class:`TeacherError` at once. Every successful reply is appended to an on-disk cache keyed
by (endpoint, model, prompt, image hashes, sample index, seed, temperature, max tokens), so a rerun never
pays for a call twice.

    pool = TeacherPool(cache_path="out/cache/calls.jsonl", concurrency=8)
    reply = await pool.chat(Endpoint.parse("http://127.0.0.1:8000=Qwen3-VL-8B"), [png], "Question?", sample=0)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from zwz.distill.journal import Journal
from zwz.endpoint import RETRY_STATUS, auth_headers, chat_url, error_message, image_data_url, user_message

logger = logging.getLogger(__name__)

__all__ = ["CallStats", "Endpoint", "Reply", "TeacherError", "TeacherPool"]


_URL_CACHE = 64  # data URLs kept (a few MB each at most)


class TeacherError(RuntimeError):
    """A call that failed for good (after retries, or with a status not worth retrying)."""


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible model: ``url`` (any form :func:`zwz.endpoint.chat_url` accepts) and ``model``.

    >>> Endpoint.parse("http://h:8000/v1=Qwen/Qwen3-VL-8B")
    Endpoint(url='http://h:8000/v1', model='Qwen/Qwen3-VL-8B', api_key_env=None)
    """

    url: str
    model: str
    api_key_env: str | None = None  # the NAME of an environment variable holding the key, never the key

    @classmethod
    def parse(cls, spec: str, api_key_env: str | None = None) -> Endpoint:
        """``URL=MODEL`` (the model name may contain ``=``-free slashes; the URL may not contain ``=``)."""
        url, sep, model = spec.partition("=")
        if not sep or not url.strip() or not model.strip():
            raise ValueError(f"endpoint must be URL=MODEL, got {spec!r}")
        return cls(url.strip(), model.strip(), api_key_env)

    @property
    def name(self) -> str:
        return f"{self.url}={self.model}"

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass
class Reply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


@dataclass
class CallStats:
    """What the teachers cost: HTTP requests (retries included), cache hits, tokens, failures."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def call_key(endpoint: Endpoint, prompt: str, images: list[bytes], *, sample: int, seed: int | None,
             temperature: float, max_tokens: int) -> str:  # fmt: skip
    """The cache key of one call (the issue's (endpoint, model, prompt, image hash, sample index, seed))."""
    blob = json.dumps([
        endpoint.url, endpoint.model, prompt, [hashlib.sha256(b).hexdigest() for b in images], sample, seed,
        temperature, max_tokens,
    ])  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


class TeacherPool:
    """Shared HTTP client, per-endpoint concurrency limits, retries and the call cache for one run."""

    def __init__(
        self,
        *,
        cache_path: str | os.PathLike[str] | None = None,
        read_cache_paths: Sequence[str | os.PathLike[str]] = (),
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        send_seed: bool = True,
    ) -> None:
        if concurrency < 1 or timeout <= 0 or max_retries < 0 or retry_backoff < 0:
            raise ValueError("TeacherPool: concurrency >= 1, timeout > 0, max_retries >= 0, retry_backoff >= 0")
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.send_seed = send_seed
        self.stats = CallStats()
        self._journal = Journal(cache_path) if cache_path is not None else None
        self._cache: dict[str, dict[str, Any]] = {}
        for path in read_cache_paths:  # other writers' caches (Ray actors): replayed, never written
            if Path(path).exists():
                self._cache.update((r["key"], r) for r in Journal(path, readonly=True).records)
        if self._journal is not None:
            self._cache.update((r["key"], r) for r in self._journal.records)
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._urls: dict[bytes, str] = {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> TeacherPool:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self._client = httpx.AsyncClient(timeout=self.timeout, limits=limits)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._journal is not None:
            self._journal.close()

    def _data_url(self, image: bytes) -> str:
        """The image's data URL, kept for the next calls: a crop goes to m x k answer calls, I' to k students."""
        key = hashlib.sha256(image).digest()
        url = self._urls.pop(key, None) or image_data_url(image)
        self._urls[key] = url  # most recent last
        while len(self._urls) > _URL_CACHE:
            self._urls.pop(next(iter(self._urls)))
        return url

    def _limit(self, endpoint: Endpoint) -> asyncio.Semaphore:
        if endpoint.name not in self._limits:
            self._limits[endpoint.name] = asyncio.Semaphore(self.concurrency)
        return self._limits[endpoint.name]

    async def chat(
        self,
        endpoint: Endpoint,
        images: list[bytes],
        prompt: str,
        *,
        sample: int = 0,
        seed: int | None = 0,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> Reply:
        """One user turn (images then text) -> the reply text; cached on disk when the call succeeds."""
        key = call_key(endpoint, prompt, images, sample=sample, seed=seed, temperature=temperature,
                       max_tokens=max_tokens)  # fmt: skip
        hit = self._cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return Reply(hit["text"], hit.get("prompt_tokens", 0), hit.get("completion_tokens", 0), cached=True)
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [user_message([self._data_url(b) for b in images], prompt)],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if self.send_seed and seed is not None:
            body["seed"] = seed * 1000 + sample  # vLLM and OpenAI honour per-request seeds
        async with self._limit(endpoint):
            data = await self._post(endpoint, body)
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            self.stats.failures += 1
            raise TeacherError(f"{endpoint.name}: reply has no choices[0].message.content") from None
        usage = data.get("usage") or {}
        reply = Reply(str(text), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        if key not in self._cache:
            record = {"key": key, "text": reply.text, "prompt_tokens": reply.prompt_tokens,
                      "completion_tokens": reply.completion_tokens}  # fmt: skip
            self._cache[key] = record
            if self._journal is not None:
                self._journal.append(record)
        return reply

    async def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        assert self._client is not None, "use `async with TeacherPool(...)`"
        url, headers = chat_url(endpoint.url), auth_headers(endpoint.api_key())
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
            self.stats.requests += 1
            self.stats.by_endpoint[endpoint.name] = self.stats.by_endpoint.get(endpoint.name, 0) + 1
            try:
                response = await self._client.post(url, json=body, headers=headers)
            except httpx.TransportError as exc:  # timeouts, refused and reset connections
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    self.stats.failures += 1
                    raise TeacherError(f"{endpoint.name}: reply is not JSON") from None
            last = error_message(response.content, status=response.status_code)
            if response.status_code not in RETRY_STATUS:
                break
        self.stats.failures += 1
        raise TeacherError(f"{endpoint.name}: {last}")
