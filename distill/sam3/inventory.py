"""The object inventory that feeds SAM3: a VLM teacher lists objects that are clearly identifiable and appear
only once (paper App. 8.1: Qwen3-VL-235B lists, SAM3 boxes), one OpenAI-compatible chat call per image.

    inventory = request_inventory(image, "http://127.0.0.1:8000", "Qwen3-VL-235B-A22B-Instruct")
    if inventory.ok:
        results = proposer.propose(image, inventory.names)          # zwz.distill.sam3.boxes

The instruction is the official pipeline's (``data_synthesis/create_crops.py``); its numbered ``\\boxed{}``
list is replaced by a JSON list so the reply can be validated strictly: anything but a JSON list of short
non-empty strings (one code fence allowed) is *malformed*, reported in ``Inventory.error`` and never raised.
Transport failures, 408/429/5xx are retried; a request still failing after the retries, or refused for
good (400, 401, 404, ...), raises :class:`InventoryRequestError`, which a pipeline counts as a teacher error.

A pipeline with its own client (async, cached) uses :func:`inventory_body` and :func:`inventory_from_response`
and skips :func:`request_inventory`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zwz.endpoint import RETRY_STATUS, auth_headers, chat_url, error_message, image_data_url, user_message

if TYPE_CHECKING:
    import httpx
    from PIL import Image

__all__ = [
    "INVENTORY_PROMPT",
    "Inventory",
    "InventoryRequestError",
    "MalformedInventory",
    "inventory_body",
    "inventory_from_response",
    "parse_inventory",
    "request_inventory",
]

logger = logging.getLogger(__name__)

INVENTORY_PROMPT = """You are an expert at analyzing images and identifying objects.

Your task:
1. Carefully observe the given image
2. List visible distinct and clear objects (such as people, animals, and things) you can see in the image. \
Only list objects that are clearly identifiable and only appear once. Avoid guessing blurry or ambiguous shapes.

Name each object with a short noun phrase. Answer with a JSON list of strings and nothing else, for example:
["person", "coffee cup", "laptop", "plant", "clock"]"""

# SAM3 reads at most 32 text tokens (its CLIP positions); a longer "name" is a sentence, not an object.
MAX_NAME_CHARS = 60
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.S)


class MalformedInventory(ValueError):
    """The teacher's reply is not a JSON list of object names."""


class InventoryRequestError(RuntimeError):
    """The teacher could not be reached, or refused the request, after the allowed retries."""


@dataclass(frozen=True)
class Inventory:
    """A teacher's object list for one image: ``names`` when the reply parsed, else ``error`` says why."""

    names: list[str]
    error: str | None = None
    raw: str | None = None  # the reply text, kept for the funnel's examples
    usage: dict[str, Any] = field(default_factory=dict)  # the response's token counts

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_inventory(text: str) -> list[str]:
    """The object names in a reply; raises :class:`MalformedInventory` unless it is a JSON list of strings.

    Names are stripped, and repeats (ignoring case) dropped; one surrounding code fence is allowed.

    >>> parse_inventory('["red car", " Street sign ", "Red Car"]')
    ['red car', 'Street sign']
    >>> parse_inventory('```json\\n["dog"]\\n```'), parse_inventory("[]")
    (['dog'], [])
    >>> parse_inventory('Objects: ["dog"]')
    Traceback (most recent call last):
    ...
    zwz.distill.sam3.inventory.MalformedInventory: not a JSON list: Expecting value at line 1 column 1
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        message = getattr(exc, "msg", str(exc))
        position = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise MalformedInventory(f"not a JSON list: {message}{position}") from None
    if not isinstance(value, list):
        raise MalformedInventory(f"not a JSON list: got a JSON {type(value).__name__}")
    names: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise MalformedInventory(f"list item {item!r} is not a string")
        name = " ".join(item.split())
        if not name:
            raise MalformedInventory("empty object name")
        if len(name) > MAX_NAME_CHARS:
            raise MalformedInventory(f"object name over {MAX_NAME_CHARS} characters: {name[:40]!r}...")
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def inventory_body(image: Image.Image | bytes, model: str, *, temperature: float = 0.7, max_tokens: int = 1024,
                   seed: int | None = None) -> dict[str, Any]:
    """The chat-completions request body asking ``model`` for the inventory of ``image`` (official sampling:
    temperature 0.7)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [user_message([image_data_url(image)], INVENTORY_PROMPT)],
        "temperature": temperature,
        "max_tokens": max_tokens,
        "stream": False,
    }
    if seed is not None:
        body["seed"] = seed
    return body


def inventory_from_response(response: dict[str, Any]) -> Inventory:
    """An :class:`Inventory` from a chat-completions response body; malformed replies become ``error``."""
    usage = response.get("usage") or {}
    try:
        text = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return Inventory(names=[], error="malformed: the response has no choices[0].message.content", usage=usage)
    if not isinstance(text, str):
        return Inventory(names=[], error="malformed: the reply content is not text", usage=usage)
    try:
        return Inventory(names=parse_inventory(text), raw=text, usage=usage)
    except MalformedInventory as exc:
        return Inventory(names=[], error=f"malformed: {exc}", raw=text, usage=usage)


def request_inventory(
    image: Image.Image | bytes,
    url: str,
    model: str,
    *,
    api_key: str | None = None,
    client: httpx.Client | None = None,
    retries: int = 3,
    timeout: float = 120.0,
    backoff: float = 0.5,
    **body_options: Any,
) -> Inventory:
    """Ask the teacher at ``url`` (any form ``zwz.endpoint.chat_url`` accepts) for ``image``'s inventory."""
    import httpx

    body = inventory_body(image, model, **body_options)
    own_client = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = client.post(chat_url(url), json=body, headers=auth_headers(api_key), timeout=timeout)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        payload = response.json()
                    except ValueError:
                        return Inventory(names=[], error="malformed: the response body is not JSON")
                    return inventory_from_response(payload)
                problem = error_message(response, status=response.status_code)
                if response.status_code not in RETRY_STATUS:
                    raise InventoryRequestError(f"{model} at {url}: {problem}")
            if last:
                raise InventoryRequestError(f"{model} at {url}: {problem} (after {retries + 1} attempts)")
            logger.warning("inventory request to %s failed (%s); retrying", url, problem)
            time.sleep(backoff * 2**attempt)
    finally:
        if own_client:
            client.close()
    raise AssertionError("unreachable")
