"""Locust users that replay benchmark items through the OpenAI API, one class per mode, and score each answer.

Importing this module imports Locust, which monkey-patches the process for gevent: import it only in a
process of its own (``zwz bench`` runs it in a worker subprocess; ``locust -f`` runs ``locustfile.py``).

Each user is a closed-loop client: it takes the next item, sends it, waits for the whole answer, scores it
and goes on with no think time. Every item fires these rows (``name`` = the mode), so accuracy and latency
come from the same requests of the same run:

- ``POST <mode>`` (``agent:call``, ``attention_zoom:map`` / ``:answer`` for the client-side multi-call modes):
  each HTTP request, timed to the end of its body (to ``data: [DONE]`` when streaming);
- ``ITEM``: one per item, end to end (all of its model calls); a failed item carries no time (Locust's
  ``response_time=None``), so the percentiles cover answered items only;
- ``TTFT``: from the item's start to its first streamed token;
- ``SCORE``: a scored answer, failed with "wrong answer" when wrong (accuracy = 1 - its failure ratio);
  ``UNSCORED``: an answer the rules could not decide (no judge), or the judge failed on;
- ``SLO``: success when the item was answered within the latency objective (goodput);
- ``CALLS``: the item's model calls, recorded as its "response time" (a count, not ms).

The shared :class:`~zwz.loadtest.workload.Workload` (items, request bodies, scorer) is set once per process
with :func:`~zwz.loadtest.workload.configure`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import gevent
import requests
from gevent.pool import Group
from locust import User, constant, task
from locust.exception import CatchResponseError
from PIL import Image

from zwz.distill.benchmark import BenchItem
from zwz.analytics.zoom.agent import run_zoom_agent
from zwz.analytics.zoom.attention_zoom import run_attention_zoom
from zwz.analytics.zoom.backend import BackendError, BackendReply, user_turn
from zwz.analytics.zoom.openai_backend import OpenAIBackend, parse_chat_completion
from zwz.analytics.zoom.requests import (
    AttentionMapReply,
    ZoomModeIgnored,
    attention_map_body,
    parse_attention_map,
    reply_trajectory,
)
from zwz.defaults import MODES
from zwz.endpoint import error_message
from zwz.loadtest.wire import ItemFailed, content, read_sse
from zwz.loadtest.workload import SCORE, UNSCORED, Workload, configure, workload

logger = logging.getLogger(__name__)

__all__ = ["ROWS", "USER_CLASSES", "AgentUser", "AttentionZoomUser", "BenchUser", "RegionalUser", "SingleUser",
           "Workload", "configure", "wait_for_scoring", "workload"]

# The custom rows each item fires (request_type); HTTP requests are "POST".
ITEM, TTFT, SLO, CALLS = "ITEM", "TTFT", "SLO", "CALLS"
ROWS = (ITEM, TTFT, SCORE, UNSCORED, SLO, CALLS)
OVER_SLO = "over the latency objective"
NOT_ANSWERED = "not answered (request failed)"


@dataclass
class Answer:
    text: str
    model_calls: int
    first_token_at: float | None = None  # perf_counter of the first streamed token


_SCORING = Group()  # judge calls run beside the users, so a slow judge does not slow the load


def wait_for_scoring(timeout: float | None = None) -> None:
    """Wait for judge greenlets still scoring (their rows belong to the cell that asked)."""
    _SCORING.join(timeout=timeout)
    gevent.sleep(0)


# ------------------------------------------------------------------------------------------------ users
class BenchUser(User):
    """A closed-loop client of one mode; subclasses implement :meth:`answer`."""

    abstract = True
    mode = ""
    wait_time = constant(0)

    def on_start(self) -> None:
        self.w = workload()
        self.http = requests.Session()

    def on_stop(self) -> None:
        self.http.close()

    def fire(self, request_type: str, name: str, response_time: float | None, error: str | None = None,
             length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type=request_type, name=name, response_time=response_time, response_length=length,
            exception=CatchResponseError(error) if error else None, context={})

    def post(self, path: str, body: dict[str, Any] | bytes, name: str, *, stream: bool = False
             ) -> tuple[dict[str, Any], float | None]:
        """POST to ``/v1{path}``: the reply and (streaming) the perf_counter of its first token. Fires ``POST name``."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        started, error, size = time.perf_counter(), None, 0
        try:
            with self.http.post(self.w.api_base + path, data=data, headers=self.w.headers, stream=stream,
                                timeout=self.w.plan.timeout_s) as resp:
                if resp.status_code != 200:
                    raise ItemFailed(error_message(resp.content, status=resp.status_code))
                reply, first = read_sse(resp.iter_lines()) if stream else (resp.json(), None)
                size = int(resp.headers.get("content-length") or 0)
            return reply, first
        except ItemFailed as exc:
            error = str(exc)
            raise
        except (requests.RequestException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise ItemFailed(error) from None
        finally:
            self.fire("POST", name, (time.perf_counter() - started) * 1e3, error, size)

    def inputs(self, item: BenchItem) -> Any:
        """What the item needs, made before its clock starts (encoding is not the model's latency)."""
        return self.w.payload(self.mode, item)

    def answer(self, item: BenchItem, inputs: Any) -> Answer:  # pragma: no cover - abstract
        raise NotImplementedError

    def one_request(self, body: bytes) -> Answer:
        reply, first = self.post("/chat/completions", body, self.mode, stream=self.w.plan.stream)
        calls = 1
        if self.mode in ("agent", "attention_zoom"):  # run inside the server
            try:
                trajectory = reply_trajectory(reply, self.mode)
            except ZoomModeIgnored as exc:  # a plain OpenAI server ignores zwz_mode
                raise ItemFailed(f"{self.w.root}: {exc} Elsewhere use --agent-side client") from None
            calls = int(trajectory.get("model_calls") or 0)
        return Answer(content(reply), calls, first)

    @task
    def one_item(self) -> None:
        w, mode = self.w, self.mode
        item = w.next_item(mode)
        w.started += 1
        started = None
        try:
            inputs = self.inputs(item)
            started = time.perf_counter()
            answer = self.answer(item, inputs)
        except Exception as exc:  # noqa: BLE001 - every failure is this item's error, counted in the report
            w.finished[id(self)] += 1
            if isinstance(exc, ItemFailed):
                message = str(exc)
            elif started is None:
                message = f"cannot read the item's image: {type(exc).__name__}: {exc}"
            else:
                message = f"client error: {type(exc).__name__}: {exc}"
                logger.exception("%s %s: unexpected client error", mode, item.id)
            self.fire(ITEM, mode, None, message)
            self.fire(SLO, mode, None, NOT_ANSWERED)
            return
        w.finished[id(self)] += 1
        latency_ms = (time.perf_counter() - started) * 1e3
        self.fire(ITEM, mode, latency_ms)
        if answer.first_token_at is not None:
            self.fire(TTFT, mode, (answer.first_token_at - started) * 1e3)
        self.fire(CALLS, mode, answer.model_calls)
        self.fire(SLO, mode, latency_ms, None if latency_ms <= w.plan.slo_ms else OVER_SLO)
        if w.scorer.judge is None:
            w.score(self.fire, mode, item, answer.text, latency_ms)
        else:
            _SCORING.spawn(w.score, self.fire, mode, item, answer.text, latency_ms)


class SingleUser(BenchUser):
    """Single pass on the full image (``zwz eval``'s global view)."""

    mode = "single"

    def answer(self, item: BenchItem, inputs: bytes) -> Answer:
        return self.one_request(inputs)


class RegionalUser(BenchUser):
    """Single pass on the item's evidence crop (the dual view's regional side)."""

    mode = "regional"

    def answer(self, item: BenchItem, inputs: bytes) -> Answer:
        return self.one_request(inputs)


class _ClientSideUser(BenchUser):
    abstract = True

    def inputs(self, item: BenchItem) -> Any:
        if self.w.one_request(self.mode):
            return super().inputs(item)
        return self.w.url(item), item.load_image().convert("RGB")


class _LocustBackend(OpenAIBackend):
    """The zoom strategies' model calls made by a Locust user: gevent-blocking HTTP, a ``POST <name>:<call>`` row
    each (``agent:call``; ``attention_zoom:map`` and ``:answer``). The attention zoom's answer streams when the
    plan does (``first_token_at`` keeps its first token).

    The original goes as the same data URL every mode sends; crops are PNG-encoded by :class:`OpenAIBackend`.
    """

    def __init__(self, user: BenchUser, original: Image.Image, original_url: str, *, call: str = "call",
                 stream: bool = False) -> None:
        super().__init__(user.w.api_base, user.w.plan.model, timeout=user.w.plan.timeout_s)
        self.user, self.call, self.stream = user, call, stream
        self.original, self.original_url = original, original_url
        self.first_token_at: float | None = None

    def data_url(self, image: Image.Image) -> str:
        return self.original_url if image is self.original else super().data_url(image)

    def _blocking_post(self, path: str, body: dict[str, Any], call: str, stream: bool = False) -> dict[str, Any]:
        try:
            reply, self.first_token_at = self.user.post(path, body, f"{self.user.mode}:{call}", stream=stream)
        except ItemFailed as exc:
            raise BackendError(str(exc)) from None
        return reply

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                       sampling: dict[str, Any]) -> BackendReply:
        body = {"model": self.model, "messages": self.wire_messages(messages, tools), **sampling,
                **(self.user.w.stream_fields() if self.stream else {})}
        return parse_chat_completion(self._blocking_post("/chat/completions", body, self.call, self.stream))

    async def attention_map(self, image: Image.Image, question: str) -> AttentionMapReply:
        body = attention_map_body(self.data_url(image), question, model=self.model,
                                  max_pixels=self.user.w.plan.settings.max_pixels)
        try:
            return parse_attention_map(self._blocking_post("/zoom/attention", body, "map"))
        except ValueError as exc:
            raise BackendError(str(exc)) from None


def _run_to_completion(coroutine):
    """Run a coroutine whose awaits all finish at once (here: gevent-blocking HTTP), without an event loop.

    asyncio loops cannot run side by side in greenlets of one thread; the zoom strategies await only their backend,
    which never suspends, so one ``send`` runs it to the end.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the zoom strategy suspended on asyncio I/O; its Locust backend must not")


class AgentUser(_ClientSideUser):
    """The tool-use zoom agent: inside a zwz server (``zwz_mode="agent"``) or driven from here
    (``agent_side="client"``)."""

    mode = "agent"

    def answer(self, item: BenchItem, inputs: Any) -> Answer:
        if self.w.one_request(self.mode):
            return self.one_request(inputs)
        s, (url, image) = self.w.plan.settings, inputs
        try:
            result = _run_to_completion(run_zoom_agent(
                _LocustBackend(self, image, url), [image], item.prompt, max_turns=s.agent_max_turns,
                fixed_turns=s.agent_fixed_turns, sampling=self.w.sampling(s.agent_max_tokens)))
        except BackendError as exc:
            raise ItemFailed(f"agent: {exc}") from None
        return Answer(result.answer or "", result.model_calls)


class AttentionZoomUser(_ClientSideUser):
    """Training-free zoom: the relative-attention map's box, then one answer on [image, crop] (2 model calls)."""

    mode = "attention_zoom"

    def answer(self, item: BenchItem, inputs: Any) -> Answer:
        w = self.w
        if w.one_request(self.mode):
            return self.one_request(inputs)
        url, image = inputs
        backend = _LocustBackend(self, image, url, call="answer", stream=w.plan.stream)
        try:
            result = _run_to_completion(run_attention_zoom(backend, [user_turn([image], item.prompt)],
                                                           sampling=w.sampling(w.plan.settings.max_tokens)))
        except BackendError as exc:
            raise ItemFailed(f"attention zoom: {exc}") from None
        return Answer(result.answer, result.model_calls, backend.first_token_at)


USER_CLASSES: dict[str, type[BenchUser]] = {
    "single": SingleUser, "regional": RegionalUser, "agent": AgentUser, "attention_zoom": AttentionZoomUser}
assert set(USER_CLASSES) == set(MODES)
