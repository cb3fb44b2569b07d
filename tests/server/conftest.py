"""A model-free engine behind the real app, for what a random-weight model cannot show (tool calls, refusals)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from zwz.server.engines.base import EngineInfo, GenerationChunk, GenerationRequest


class ScriptedEngine:
    """Implements the ``Engine`` protocol: answers every request with ``script``, one character per chunk.

    It has no attention maps, reports ``queue_depth`` as set, tells its batch listeners that every request
    is a batch of one, and keeps the requests it was asked.
    """

    attention_maps = None

    def __init__(self, script: str = "ok", *, queue_depth: int = 0) -> None:
        self.script = script
        self.info = EngineInfo(model_dir="/scripted", engine="scripted", family="qwen3_vl", max_model_len=4096,
                               device="cpu", dtype="float32", random_weights=False)
        self.batch_listeners: list[Callable[[int], None]] = []
        self.requests: list[GenerationRequest] = []
        self.streams: list = []  # the chunk streams it returned, to check they were closed
        self._queue_depth = queue_depth

    @property
    def queue_depth(self) -> int:
        return self._queue_depth

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def submit(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.requests.append(request)
        for listener in self.batch_listeners:
            listener(1)

        async def chunks():
            for i, ch in enumerate(self.script):
                yield GenerationChunk(text=ch, token_ids=[i], prompt_tokens=10, completion_tokens=i + 1)
            yield GenerationChunk(finish_reason="stop", prompt_tokens=10, completion_tokens=len(self.script) + 1)

        self.streams.append(chunks())
        return self.streams[-1]


@pytest.fixture(scope="session")
def scripted_engine() -> type[ScriptedEngine]:
    """The ``ScriptedEngine`` class: ``scripted_engine("text")`` makes one."""
    return ScriptedEngine


@pytest.fixture
def serve_scripted(run_app) -> Callable:
    """``with serve_scripted(engine) as url: ...`` runs the real app over ``engine`` under a live uvicorn."""
    from zwz.server.api.app import create_app
    from zwz.server.settings import ServerSettings

    return lambda engine: run_app(create_app(ServerSettings(), engine))


@pytest.fixture(scope="session")
def good_request(images) -> Callable:
    """``good_request(client, model)``: a normal request that must succeed, sent after every error case to show
    the server still answers. Four greedy tokens about a plain picture: random weights never stop earlier."""

    def check(client, model: str) -> None:
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": images.png_data_url()}},
                                                 {"type": "text", "text": "What color is the car?"}]}]
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=0)
        assert (r.choices[0].finish_reason, r.usage.completion_tokens) == ("length", 4)

    return check
