"""The zoom strategies' model calls over HTTP: :class:`OpenAIBackend` talks to any OpenAI-compatible server
(zwz, plain vLLM, ...); zwz servers also give it the attention-zoom map (``POST /v1/zoom/attention``).

    async with OpenAIBackend("http://127.0.0.1:8000/v1", "ZwZ-8B") as backend:
        result = await run_zoom_agent(backend, [image], "What is written on the small sign?")

The pieces other HTTP clients reuse (the eval harness over its retrying ``Endpoint``, the Locust users over
gevent-blocking ``requests``): :func:`wire_messages` (image parts -> data URLs, the tool list in the system
turn) and :func:`parse_chat_completion` (a chat completion body -> :class:`BackendReply`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import weakref
from collections.abc import Callable
from typing import Any, Literal

import httpx
from PIL import Image

from zwz.analytics.zoom.backend import BackendError, BackendReply
from zwz.analytics.zoom.requests import AttentionMapReply, attention_map_body, parse_attention_map
from zwz.endpoint import api_base, auth_headers, error_message

__all__ = ["OpenAIBackend", "parse_chat_completion", "qwen_tools_system_prompt", "wire_messages"]

_RESERVED_FIELDS = frozenset({"model", "messages", "tools", "stream"})


def qwen_tools_system_prompt(tools: list[dict[str, Any]], system: str = "") -> str:
    """The system text Qwen3(-VL) chat templates render for ``tools`` (also Qwen-Agent's function-call prompt).

    >>> text = qwen_tools_system_prompt([{"type": "function", "function": {"name": "f"}}], "Be brief.")
    >>> text.splitlines()[:3]
    ['Be brief.', '', '# Tools']
    >>> text.split("<tools>")[-1].split("</tools>")[0]
    '\\n{"type": "function", "function": {"name": "f"}}\\n'
    """
    # json.dumps with default separators matches the templates' `tojson`, so the prompt is token-identical.
    listed = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
    text = (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>{listed}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )
    return f"{system}\n\n{text}" if system else text


def wire_messages(messages: list[dict[str, Any]], data_url: Callable[[Image.Image], str], *,
                  tools: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The conversation as an OpenAI request carries it: image parts become ``image_url`` parts (``data_url``
    encodes each); with ``tools``, their Qwen prompt is written into the system turn (made when missing).

    >>> wire_messages([{"role": "user", "content": [{"type": "image", "image": "im"}]}], lambda im: "data:" + im)
    [{'role': 'user', 'content': [{'type': 'image_url', 'image_url': {'url': 'data:im'}}]}]
    """
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [{"type": "image_url", "image_url": {"url": data_url(part["image"])}}
                       if part.get("type") == "image" else part for part in content]
        out.append({**message, "content": content})
    if tools:
        if out and out[0]["role"] == "system":
            system = out[0]["content"]
            if not isinstance(system, str):
                system = "".join(p.get("text", "") for p in system or [])
            out[0] = {"role": "system", "content": qwen_tools_system_prompt(tools, system)}
        else:
            out.insert(0, {"role": "system", "content": qwen_tools_system_prompt(tools)})
    return out


def parse_chat_completion(body: Any, source: str = "the endpoint") -> BackendReply:
    """A chat completion body -> :class:`BackendReply`; anything else raises :class:`BackendError`.

    >>> parse_chat_completion({"choices": [{"message": {"content": "Red."}, "finish_reason": "stop"}],
    ...                        "usage": {"prompt_tokens": 9, "completion_tokens": 2}}).finish_reason
    'stop'
    """
    try:
        choice = body["choices"][0]
        message = choice["message"]
        usage = body.get("usage") or {}
        return BackendReply(
            text=message.get("content") or "",
            tool_calls=message.get("tool_calls") or None,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            visual_tokens=int(usage.get("visual_tokens") or 0),  # zwz extension; 0 elsewhere
            finish_reason=choice.get("finish_reason"),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise BackendError(f"{source} reply is not a chat completion: {str(body)[:300]!r}") from exc


class OpenAIBackend:
    """:class:`ChatBackend` over ``POST /v1/chat/completions`` of any OpenAI-compatible server (httpx, async).

    ``tool_mode="prompt"`` (default) writes the tool list into the system turn the way Qwen's templates do and
    sends no ``tools`` field: the prompt is the same as with ``"request"`` on a Qwen3-VL template, and it works on
    a vLLM started without ``--enable-auto-tool-choice`` (which refuses requests carrying ``tools``).
    ``"request"`` sends ``tools`` for the server's template to render. Images go as data URLs (PNG by default:
    lossless; ``image_format="JPEG"`` for smaller uploads), each encoded once per image object, after an
    optional client-side downscale to ``max_pixels``. No retries: failures raise :class:`BackendError`.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 300.0,
                 max_pixels: int | None = None, image_format: Literal["PNG", "JPEG"] = "PNG",
                 tool_mode: Literal["prompt", "request"] = "prompt"):
        if not base_url or not model:
            raise ValueError("OpenAIBackend needs a base_url and a model name")
        if image_format not in ("PNG", "JPEG") or tool_mode not in ("prompt", "request"):
            raise ValueError("image_format must be 'PNG' or 'JPEG'; tool_mode 'prompt' or 'request'")
        if max_pixels is not None and max_pixels < 1:
            raise ValueError("max_pixels must be >= 1")
        self.api_base = api_base(base_url)
        self.url = self.api_base + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_pixels = max_pixels
        self.image_format = image_format
        self.tool_mode = tool_mode
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[int, tuple[weakref.ref, str]] = {}  # id(image) -> (ref, data URL); ref guards id reuse

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        # An AsyncClient's pooled connections belong to the loop that opened them; a caller running one
        # asyncio.run per item would otherwise reuse dead connections.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._client_loop = loop
        return self._client

    def data_url(self, image: Image.Image) -> str:
        hit = self._urls.get(id(image))
        if hit is not None and hit[0]() is image:
            return hit[1]
        if len(self._urls) > 512:
            self._urls = {k: v for k, v in self._urls.items() if v[0]() is not None}
        original = image
        if self.max_pixels is not None and image.width * image.height > self.max_pixels:
            scale = math.sqrt(self.max_pixels / (image.width * image.height))
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                                 Image.Resampling.BICUBIC)
        keep = ("RGB", "L") if self.image_format == "JPEG" else ("RGB", "RGBA", "L", "LA", "P")
        if image.mode not in keep:
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, self.image_format, **({"quality": 95} if self.image_format == "JPEG" else {}))
        url = f"data:image/{self.image_format.lower()};base64," + base64.b64encode(buf.getvalue()).decode()
        self._urls[id(original)] = (weakref.ref(original), url)
        return url

    def wire_messages(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return wire_messages(messages, self.data_url, tools=tools if self.tool_mode == "prompt" else None)

    async def _post(self, url: str, payload: dict[str, Any]) -> Any:
        try:
            resp = await self._http().post(url, json=payload, headers=auth_headers(self.api_key))
        except httpx.HTTPError as exc:
            raise BackendError(f"call to {url} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise BackendError(f"{url} returned {error_message(resp.content, status=resp.status_code)}",
                               status_code=resp.status_code)
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendError(f"{url} reply is not JSON: {resp.text[:300]!r}") from exc

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                       sampling: dict[str, Any]) -> BackendReply:
        reserved = _RESERVED_FIELDS & sampling.keys()
        if reserved:
            raise ValueError(f"sampling must not set {sorted(reserved)}")
        # PNG-encoding a large image takes tens of milliseconds: keep the event loop free.
        wire = await asyncio.to_thread(self.wire_messages, messages, tools)
        payload: dict[str, Any] = {"model": self.model, "messages": wire, **sampling}
        if tools and self.tool_mode == "request":
            payload["tools"] = tools
        return parse_chat_completion(await self._post(self.url, payload), self.url)

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply:
        """``POST /v1/zoom/attention`` (zwz servers): where the model looks to answer ``question``."""
        url = self.api_base + "/zoom/attention"
        image_url = await asyncio.to_thread(self.data_url, image)
        body = attention_map_body(image_url, question, model=self.model)
        return parse_attention_map(await self._post(url, body), url)
