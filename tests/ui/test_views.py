"""The UI's views without a browser: boxes, agent crops, verdicts, and every view against a live tiny server."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from zwz.ui.client import ServerError, ZwzClient
from zwz.ui.views import VIEWS, Query, RunSettings, agent_crops, parse_box, run_views, verdict


def _collect(url: str, query: Query) -> dict:
    async def go():
        async with ZwzClient(url, timeout=60) as client:
            return {r.view: r async for r in run_views(client, query)}

    return asyncio.run(go())


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "5,5,5,9", "0,0,900,10"])
def test_parse_box_refuses_what_is_not_a_box_inside_the_image(text):
    with pytest.raises(ValueError, match="evidence box"):
        parse_box(text, (640, 480))


def test_agent_crops_replay_nested_zooms_and_skip_refused_calls():
    image = Image.new("RGB", (400, 300))
    image.paste((255, 0, 0), (100, 100, 200, 150))
    trajectory = {"turns": [
        {"index": 0, "calls": [{"img_idx": 0, "crop_box_px": [100, 100, 300, 200], "crop_size": [200, 100]},
                               {"img_idx": 5, "crop_box_px": None, "error": "img_idx 5 does not exist"}]},
        {"index": 1, "calls": [{"img_idx": 1, "crop_box_px": [0, 0, 100, 50], "crop_size": [100, 50]}]},
    ]}  # fmt: skip
    crops = agent_crops(image, trajectory)
    assert [c.size for c, _ in crops] == [(200, 100), (100, 50)]
    # The second zoom cut the first crop's top-left quarter: all red.
    assert crops[1][0].getcolors() == [(100 * 50, (255, 0, 0))]
    assert crops[1][1].startswith("turn 2:") and "of image 1" in crops[1][1]
    assert agent_crops(image, None) == []


def test_verdicts_follow_the_benchmark_rules():
    assert verdict("The answer is B.", "B", "Q?\nA. red\nB. blue", ["red", "blue"]) == "correct"
    assert verdict("A", "B", options=["red", "blue"]) == "incorrect"
    assert verdict("9", "9") == "correct"
    assert verdict("a purple-ish hue", "violet") == "unjudged"
    assert verdict("anything", "") is None


def test_every_view_answers_against_a_live_server(zwz_server, images):
    image = images.noise(320, 240, seed=1)
    query = Query(image, "What is in the box?", box=(40, 40, 200, 160), reference="7",
                  settings=RunSettings(max_tokens=4, agent_max_turns=3, agent_fixed_turns=1))
    results = _collect(zwz_server, query)
    assert set(results) == set(VIEWS)
    assert not [r.error for r in results.values() if r.error]
    # One call each; the agent's forced zoom (fixed_turns 1: random weights never ask) and attention-zoom's
    # second look make two.
    for view, calls in {"single": 1, "regional": 1, "agent": 2, "attention_zoom": 2}.items():
        r = results[view]
        assert isinstance(r.answer, str) and r.latency_ms > 0 and r.model_calls == calls, (view, r.model_calls)
        assert r.verdict in ("correct", "incorrect", "unjudged"), view
    assert results["regional"].images[0][0].size == (160, 120)
    assert results["agent"].images  # the forced zoom
    assert results["attention_zoom"].model_calls == 2 and results["attention_zoom"].box
    heat = results["heatmap"]
    assert heat.images and heat.images[0][0].size == image.size
    assert 0.0 <= heat.coverage <= 1.0


def test_views_fail_one_by_one_with_a_message_when_the_server_is_down(dead_url, images):
    query = Query(images.noise(64, 64), "What is it?", box=(0, 0, 32, 32))
    results = _collect(dead_url, query)
    assert set(results) == set(VIEWS)
    for r in results.values():
        assert r.error.startswith(f"cannot reach the zwz server at {dead_url}"), r
        assert not r.skipped


def test_a_view_that_cannot_apply_is_skipped_while_the_others_run(zwz_server, images):
    query = Query(images.noise(96, 96), "What is it?", settings=RunSettings(max_tokens=2))
    results = _collect(zwz_server, query)
    assert results["regional"].skipped and "evidence box" in results["regional"].error
    assert results["single"].answer is not None and not results["single"].error


def test_client_errors_are_one_line_messages(zwz_server):
    async def go():
        async with ZwzClient(zwz_server, model="no-such-model") as client:
            with pytest.raises(ServerError, match="HTTP 404"):
                await client.chat([], "hi", max_tokens=1)

    asyncio.run(go())


class NeverAnswers:
    """An ASGI app that reads requests and never answers them; ``open`` counts those whose client is still there."""

    def __init__(self) -> None:
        self.open = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.open += 1
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            self.open -= 1


def test_a_consumer_that_stops_early_leaves_no_request_running(run_app, images, until):
    server = NeverAnswers()

    async def go(url):
        before = asyncio.all_tasks()
        async with ZwzClient(url, model="m") as client:
            views = run_views(client, Query(images.noise(32, 32), "q", box=(0, 0, 16, 16)))
            pending = asyncio.ensure_future(anext(views))
            await until(lambda: server.open == len(VIEWS), "every view's request reaching the server")
            assert not pending.done()  # all views are waiting on the server at once
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await views.aclose()
            leftover = asyncio.all_tasks() - before
        await until(lambda: server.open == 0, "the server seeing every request go away")
        return leftover

    with run_app(server) as url:
        assert asyncio.run(go(url)) == set()


def test_the_form_defaults_come_from_the_shared_table():
    from zwz.defaults import AGENT_FIXED_TURNS, AGENT_MAX_TURNS, ANSWER_MAX_TOKENS
    from zwz.ui.form import read_settings

    blank = read_settings(None, "", None, None, None)
    assert blank == RunSettings() == RunSettings(max_tokens=ANSWER_MAX_TOKENS, agent_max_turns=AGENT_MAX_TURNS,
                                                 agent_fixed_turns=AGENT_FIXED_TURNS)
    assert blank.agent_max_turns == 20  # Qwen-Agent's limit, as zwz eval and zwz bench use
