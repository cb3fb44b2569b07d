"""The evaluation modes and the resumable run behind ``zwz eval``.

Modes (the API's names, ``zwz.defaults.MODES``; paper Sec. 5.1 dual view, Table 4 tool use, App. 12 attention):

- ``single``: the full image and the prompt, one pass (the paper's global view);
- ``regional``: the item's crop and the prompt (the dual view's upper bound);
- ``agent``: the tool-use zoom agent ("thinking with images"), driven from here through any OpenAI-compatible
  endpoint (``agent_side="client"``) or run inside a zwz server (``"server"``, ``zwz_mode: "agent"``);
- ``attention_zoom``: training-free zoom: the relative-attention map's suggested box (POST /v1/zoom/attention)
  is cropped and the model answers on [image, crop] in one request (or ``zwz_mode: "attention_zoom"``).

Each finished (mode, item) is appended to ``predictions.jsonl`` at once, so an interrupted run loses nothing;
a rerun skips what is there and retries what failed. Files written with the old mode names (``global``,
``attention-zoom``) are read with the new ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from zwz.distill.benchmark import BenchItem
from zwz.analytics.zoom.agent import run_zoom_agent
from zwz.analytics.zoom.attention_zoom import run_attention_zoom
from zwz.analytics.zoom.backend import BackendError, BackendReply, user_turn
from zwz.analytics.zoom.openai_backend import parse_chat_completion, wire_messages
from zwz.analytics.zoom.requests import (
    AttentionMapReply,
    ZoomModeIgnored,
    attention_map_body,
    parse_attention_map,
    reply_trajectory,
    zoom_chat_body,
)
from zwz.analytics.eval.client import Endpoint, EndpointError, RequestFailed
from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TOKENS, AGENT_MAX_TURNS, ANSWER_MAX_TOKENS, MODE_ALIASES, MODES
from zwz.endpoint import image_data_url, user_message
from zwz.scoring.judge import JudgeError
from zwz.scoring import RewardFn

logger = logging.getLogger(__name__)

__all__ = ["EvalSettings", "ModeRunner", "PredictionStore", "rescore", "run_mode"]


@dataclass(frozen=True)
class EvalSettings:
    """What shapes the predictions (recorded in ``run.json``; a resumed run must match it)."""

    max_tokens: int = ANSWER_MAX_TOKENS
    temperature: float = 0.0
    max_pixels: int | None = None
    agent_max_turns: int = AGENT_MAX_TURNS
    agent_fixed_turns: int = AGENT_FIXED_TURNS
    agent_max_tokens: int = AGENT_MAX_TOKENS
    agent_side: str = "client"

    def sampling(self, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": self.temperature}
        if self.max_pixels:
            body["mm_processor_kwargs"] = {"max_pixels": self.max_pixels}
        return body

    def fingerprint(self, mode: str) -> dict[str, Any]:
        if mode == "coverage":  # the coverage pass (coverage_pass.py): one attention map, no sampling
            return {"max_pixels": self.max_pixels}
        keys = ["max_tokens", "temperature", "max_pixels"]
        if mode == "agent":
            keys = ["agent_max_tokens", "temperature", "max_pixels", "agent_max_turns", "agent_fixed_turns",
                    "agent_side"]
        elif mode == "attention_zoom":
            keys.append("agent_side")
        return {k: asdict(self)[k] for k in keys}


@dataclass
class Outcome:
    prediction: str
    model_calls: int
    image_encodings: int
    tokens: dict[str, int | None]
    trajectory: dict[str, Any] | None = None


def _tokens(usage: dict[str, Any] | None) -> dict[str, int | None]:
    usage = usage or {}
    return {"prompt": usage.get("prompt_tokens"), "completion": usage.get("completion_tokens"),
            "visual": usage.get("visual_tokens")}  # visual_tokens: a zwz (and not vLLM) extension


def _answer(reply: dict[str, Any]) -> str:
    try:
        return reply["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RequestFailed(f"reply is not a chat completion: {str(reply)[:200]}") from None


class _EndpointZoomBackend:
    """The attention zoom's two model calls over this run's :class:`Endpoint` (its retries and error classes).

    The original goes as the same data URL every mode sends; the crop is PNG-encoded off the event loop.
    """

    def __init__(self, endpoint: Endpoint, original: Image.Image, original_url: str, max_pixels: int | None) -> None:
        self.endpoint, self.original, self.original_url, self.max_pixels = endpoint, original, original_url, max_pixels

    def _url(self, image: Image.Image) -> str:
        return self.original_url if image is self.original else image_data_url(image)

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply:
        reply = await self.endpoint.attention(attention_map_body(self._url(image), question, max_pixels=self.max_pixels))
        try:
            return parse_attention_map(reply, "/zoom/attention")
        except ValueError as exc:
            raise RequestFailed(str(exc)) from None

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                       sampling: dict[str, Any]) -> BackendReply:
        wire = await asyncio.to_thread(wire_messages, messages, self._url, tools=tools)
        return parse_chat_completion(await self.endpoint.chat({"messages": wire, **sampling}), "/chat/completions")


class ModeRunner:
    """Answers one item in one mode; :meth:`answer` returns the outcome and the latency in ms."""

    def __init__(self, endpoint: Endpoint, settings: EvalSettings, agent_backend: Any = None) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.agent_backend = agent_backend

    def _inputs(self, mode: str, item: BenchItem, client_agent: bool) -> dict[str, Any]:
        """Image payloads, built before the clock starts (encoding is not the model's latency)."""
        if mode == "regional":
            if item.crop_image is None:
                raise RequestFailed("item has no crop_image")
            return {"url": image_data_url(item.crop_image)}
        if mode == "agent" and client_agent:
            image = item.load_image().convert("RGB")
            # OpenAIBackend caches each image's data URL: encode the original now, as the other modes do.
            warm = getattr(self.agent_backend, "data_url", None)
            if warm is not None:
                warm(image)
            return {"image": image}
        inputs: dict[str, Any] = {"url": image_data_url(item.image)}
        if mode == "attention_zoom":
            inputs["image"] = item.load_image().convert("RGB")
        return inputs

    async def answer(self, mode: str, item: BenchItem) -> tuple[Outcome, float]:
        server_side = self.settings.agent_side == "server"
        try:
            inputs = await asyncio.to_thread(self._inputs, mode, item, mode == "agent" and not server_side)
        except (OSError, ValueError) as exc:  # a missing or undecodable image file is this item's error
            raise RequestFailed(f"cannot read the item's image: {exc}") from None
        started = time.perf_counter()
        if mode in ("single", "regional"):
            outcome = await self._single(inputs["url"], item.prompt)
        elif mode in ("agent", "attention_zoom") and server_side:
            outcome = await self._server_mode(mode, inputs["url"], item.prompt)
        elif mode == "agent":
            outcome = await self._client_agent(inputs["image"], item.prompt)
        elif mode == "attention_zoom":
            outcome = await self._client_attention_zoom(inputs["url"], inputs["image"], item.prompt)
        else:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        return outcome, (time.perf_counter() - started) * 1e3

    async def _single(self, url: str, prompt: str) -> Outcome:
        body = {"messages": [user_message([url], prompt)], **self.settings.sampling(self.settings.max_tokens)}
        reply = await self.endpoint.chat(body)
        return Outcome(_answer(reply), 1, 1, _tokens(reply.get("usage")))

    async def _server_mode(self, mode: str, url: str, prompt: str) -> Outcome:
        s = self.settings
        body = zoom_chat_body(mode, [user_message([url], prompt)], temperature=s.temperature, max_pixels=s.max_pixels,
                              max_tokens=s.agent_max_tokens if mode == "agent" else s.max_tokens,
                              max_turns=s.agent_max_turns, fixed_turns=s.agent_fixed_turns)
        reply = await self.endpoint.chat(body)
        try:
            trajectory = reply_trajectory(reply, mode)
        except ZoomModeIgnored as exc:  # a plain OpenAI server ignores zwz_mode and answers single-pass
            raise EndpointError(f"{self.endpoint.root}: {exc} --agent-side server needs a zwz server, use "
                                "--agent-side client") from None
        return Outcome(_answer(reply), int(trajectory.get("model_calls", 0)),
                       int(trajectory.get("image_encodings", 0)), _tokens(reply.get("usage")), trajectory)

    async def _client_agent(self, image: Image.Image, prompt: str) -> Outcome:
        s = self.settings
        try:
            result = await run_zoom_agent(self.agent_backend, [image], prompt, max_turns=s.agent_max_turns,
                                          fixed_turns=s.agent_fixed_turns, sampling=s.sampling(s.agent_max_tokens))
        except BackendError as exc:
            if exc.status_code == 401:
                raise EndpointError(f"{self.endpoint.root} refused the API key ({exc})") from None
            raise RequestFailed(f"agent: {exc}") from None
        # Images always cost visual tokens: 0 means the endpoint does not report them (not a zwz server).
        tokens = {"prompt": result.prompt_tokens, "completion": result.completion_tokens,
                  "visual": result.visual_tokens or None}
        return Outcome(result.answer or "", result.model_calls, result.image_encodings, tokens, result.to_dict())

    async def _client_attention_zoom(self, url: str, image: Image.Image, prompt: str) -> Outcome:
        s = self.settings
        backend = _EndpointZoomBackend(self.endpoint, image, url, s.max_pixels)
        try:
            result = await run_attention_zoom(backend, [user_turn([image], prompt)], sampling=s.sampling(s.max_tokens))
        except BackendError as exc:
            raise RequestFailed(f"attention zoom: {exc}") from None
        tokens = {"prompt": result.prompt_tokens, "completion": result.completion_tokens,
                  "visual": result.visual_tokens or None}  # 0: the endpoint does not report them
        return Outcome(result.answer, result.model_calls, result.image_encodings, tokens, result.to_dict())


# ---------------------------------------------------------------------------------------- predictions file
class PredictionStore:
    """``predictions.jsonl``: one line per finished (mode, item), appended as it finishes.

    Loading keeps the last line per (mode, id), skips a torn last line, drops items whose request failed
    (they are retried) and renames old mode names (``global`` -> ``single``); the file is then rewritten so it
    again holds one line per (mode, item).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        lines = dropped = renamed = 0
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                lines += 1
                try:
                    record = json.loads(line)
                    if record["mode"] in MODE_ALIASES:  # written before the modes took the API's names
                        record["mode"] = MODE_ALIASES[record["mode"]]
                        renamed += 1
                    key = (record["mode"], record["id"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s: skipping unreadable line %d (a run interrupted mid-write)", self.path, lineno)
                    dropped += 1
                    continue
                if record.get("error_stage") == "request":
                    dropped += 1
                    self.records.pop(key, None)
                    continue
                self.records[key] = record
        if dropped or renamed or lines != len(self.records):
            logger.info("%s: %d finished, %d to retry or unreadable; compacting", self.path, len(self.records), dropped)
            self.rewrite()

    def rewrite(self) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for record in self.records.values():
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)

    def append(self, record: dict[str, Any]) -> None:
        self.records[(record["mode"], record["id"])] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:  # one write + flush per record: a crash loses none
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def score_record(record: dict[str, Any], item: BenchItem, scorer: RewardFn) -> None:
    """Rule match, then the judge when there is one; a failing judge makes an error, never a 0."""
    try:
        result = scorer.score(record["prediction"], item.answer, question=item.prompt, options=item.options)
    except JudgeError as exc:
        record.update(score=None, decided_by=None, error=f"judge: {exc}", error_stage="judge")
    else:
        record.update(score=result.score, decided_by=result.method, error=None, error_stage=None)


async def rescore(store: PredictionStore, items: dict[str, BenchItem], scorer: RewardFn) -> int:
    """Score again, without asking the model, what a judge failed on or could not see (no judge last time)."""
    todo = [r for (_, item_id), r in store.records.items() if item_id in items and
            (r.get("error_stage") == "judge" or (r.get("decided_by") == "unjudged" and scorer.judge is not None))]
    if todo:
        await asyncio.gather(*(asyncio.to_thread(score_record, r, items[r["id"]], scorer) for r in todo))
        store.rewrite()
        logger.info("rescored %d stored predictions", len(todo))
    return len(todo)


async def _one(mode: str, item: BenchItem, runner: ModeRunner, scorer: RewardFn, store: PredictionStore,
               sem: asyncio.Semaphore) -> dict[str, Any]:
    """Answer, score and append one (mode, item); the line is written as soon as it is known."""
    record: dict[str, Any] = {
        "id": item.id, "mode": mode, "dimension": item.dimension, "multiple_choice": item.multiple_choice,
        "prediction": None, "answer": item.answer, "score": None, "decided_by": None, "latency_ms": None,
        "model_calls": None, "image_encodings": None, "tokens": None, "error": None, "error_stage": None,
    }  # fmt: skip
    async with sem:
        try:
            outcome, latency_ms = await runner.answer(mode, item)
        except RequestFailed as exc:
            record.update(error=str(exc), error_stage="request")
            store.append(record)
            return record
    record.update(prediction=outcome.prediction, latency_ms=round(latency_ms, 3), model_calls=outcome.model_calls,
                  image_encodings=outcome.image_encodings, tokens=outcome.tokens)
    if outcome.trajectory is not None:
        record["trajectory"] = outcome.trajectory
    await asyncio.to_thread(score_record, record, item, scorer)
    store.append(record)
    return record


async def run_mode(mode: str, items: list[BenchItem], runner: ModeRunner, scorer: RewardFn,
                   store: PredictionStore, *, concurrency: int = 4, progress: bool = True,
                   warmup: int = 1) -> dict[str, int]:
    """Answer and score the items of ``mode`` not in ``store`` yet, ``concurrency`` at a time.

    ``warmup`` untimed, unrecorded requests (on the first pending item) go first, so one-off start-up costs
    (compilation, caches, the first batch) do not land in the latencies of a short run.
    """
    from tqdm.auto import tqdm

    todo = [item for item in items if (mode, item.id) not in store.records]
    for _ in range(warmup if todo else 0):
        try:
            await runner.answer(mode, todo[0])
        except RequestFailed as exc:
            logger.debug("%s warm-up failed: %s", mode, exc)
    sem = asyncio.Semaphore(concurrency)
    counts = {"requested": len(todo), "errors": 0}
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=f"{mode:>14}", unit="item",
               disable=not progress, dynamic_ncols=True)
    tasks = [asyncio.ensure_future(_one(mode, item, runner, scorer, store, sem)) for item in todo]
    try:
        for next_done in asyncio.as_completed(tasks):
            record = await next_done
            if record["error"]:
                counts["errors"] += 1
                # The first one is shown now; all are in the report.
                (logger.warning if counts["errors"] == 1 else logger.debug)(
                    "%s %s: %s", mode, record["id"], record["error"])
                bar.set_postfix(errors=counts["errors"])
            bar.update(1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
    return counts
