"""Locust users that replay benchmark items through the OpenAI API, one class per mode, and score each answer.

Importing this module imports Locust, which monkey-patches the process for gevent: import it only in a
process of its own (``zwz bench`` runs it in a worker subprocess; ``locust -f`` runs ``locustfile.py``).

Each user is a closed-loop client: it takes the next item, sends it, waits for the whole answer, scores it
and goes on with no think time. Every item fires these rows (``name`` = the mode), so accuracy and latency
come from the same requests of the same run:

- ``POST <mode>`` (``agent:call``, ``attention-zoom:map`` / ``:answer`` for the client-side multi-call modes):
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
from zwz.analytics.eval.client import RequestFailed, image_data_url, user_message
from zwz.analytics.eval.runner import suggested_crop_box
from zwz.analytics.zoom.agent import BackendError, BackendReply, OpenAIBackend, run_zoom_agent
from zwz.analytics.zoom.tool import ZOOMED_VIEW_NOTE
from zwz.loadtest.plan import MODES
from zwz.loadtest.wire import ItemFailed, content, error_message, read_sse
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
                    raise ItemFailed(error_message(resp.status_code, resp.content))
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
        if self.mode in ("agent", "attention-zoom"):  # run inside the server
            trajectory = reply.get("zwz_trajectory")
            if not isinstance(trajectory, dict):  # a plain OpenAI server ignores zwz_mode
                raise ItemFailed(f"the server ignored zwz_mode (its reply has no zwz_trajectory): is {self.w.root} "
                                 "a zwz server? Elsewhere use --agent-side client")
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


class _LocustAgentBackend(OpenAIBackend):
    """The zoom agent's model calls made by a Locust user (gevent-blocking HTTP, a ``POST agent:call`` row each).

    The original goes as the same data URL every mode sends; crops are PNG-encoded by :class:`OpenAIBackend`.
    """

    def __init__(self, user: BenchUser, original: Image.Image, original_url: str) -> None:
        super().__init__(user.w.api_base, user.w.plan.model, timeout=user.w.plan.timeout_s)
        self.user = user
        self.original, self.original_url = original, original_url

    def data_url(self, image: Image.Image) -> str:
        return self.original_url if image is self.original else super().data_url(image)

    async def complete(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                       sampling: dict[str, Any]) -> BackendReply:
        body = {"model": self.model, "messages": self.wire_messages(messages, tools), **sampling}
        try:
            reply, _ = self.user.post("/chat/completions", body, "agent:call")
            choice = reply["choices"][0]
            message = choice["message"]
        except ItemFailed as exc:
            raise BackendError(str(exc)) from None
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"reply is not a chat completion: {str(reply)[:200]}") from exc
        usage = reply.get("usage") or {}
        return BackendReply(text=message.get("content") or "", tool_calls=message.get("tool_calls") or None,
                            prompt_tokens=int(usage.get("prompt_tokens") or 0),
                            completion_tokens=int(usage.get("completion_tokens") or 0),
                            visual_tokens=int(usage.get("visual_tokens") or 0),
                            finish_reason=choice.get("finish_reason"))


def _run_to_completion(coroutine):
    """Run a coroutine whose awaits all finish at once (here: gevent-blocking HTTP), without an event loop.

    asyncio loops cannot run side by side in greenlets of one thread; the agent loop awaits only its backend,
    which never suspends, so one ``send`` runs it to the end.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the zoom agent suspended on asyncio I/O; its Locust backend must not")


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
                _LocustAgentBackend(self, image, url), [image], item.prompt, max_turns=s.agent_max_turns,
                fixed_turns=s.agent_fixed_turns, sampling=self.w.sampling(s.agent_max_tokens)))
        except BackendError as exc:
            raise ItemFailed(f"agent: {exc}") from None
        return Answer(result.answer or "", result.model_calls)


class AttentionZoomUser(_ClientSideUser):
    """Training-free zoom: the relative-attention map's box, then one answer on [image, crop] (2 model calls)."""

    mode = "attention-zoom"

    def answer(self, item: BenchItem, inputs: Any) -> Answer:
        w = self.w
        if w.one_request(self.mode):
            return self.one_request(inputs)
        url, image = inputs
        body: dict[str, Any] = {"model": w.plan.model, "image": url, "question": item.prompt, "heatmap": False}
        if w.plan.settings.max_pixels:
            body["mm_processor_kwargs"] = {"max_pixels": w.plan.settings.max_pixels}
        attention, _ = self.post("/zoom/attention", body, "attention-zoom:map")
        try:
            box = suggested_crop_box(attention.get("suggested_box"), image.size)
        except RequestFailed as exc:
            raise ItemFailed(str(exc)) from None
        crop_url = image_data_url(image.crop(box))
        question = f"{ZOOMED_VIEW_NOTE}\n{item.prompt}"
        chat = {"model": w.plan.model, "messages": [user_message([url, crop_url], question)],
                **w.sampling(w.plan.settings.max_tokens), **w.stream_fields()}
        reply, first = self.post("/chat/completions", chat, "attention-zoom:answer", stream=w.plan.stream)
        return Answer(content(reply), 2, first)


USER_CLASSES: dict[str, type[BenchUser]] = {
    "single": SingleUser, "regional": RegionalUser, "agent": AgentUser, "attention-zoom": AttentionZoomUser}
assert set(USER_CLASSES) == set(MODES)
