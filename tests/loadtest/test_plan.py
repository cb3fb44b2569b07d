"""The sweep plan and the request bodies each mode sends (built in-process: no Locust, no server)."""

from __future__ import annotations

import json

import pytest

from zwz.distill.benchmark import load_benchmark
from zwz.loadtest.plan import SweepPlan
from zwz.loadtest.workload import SCORE, UNSCORED, WRONG, Workload


def test_plan_round_trips_and_orders_cells(tmp_path):
    plan = SweepPlan(base_url="http://h:1", model="m", benchmark="b", modes=["agent", "single"], users=[1, 4],
                     duration_s=2, slo_ms=100)
    again = SweepPlan.read(plan.write(tmp_path / "plan.json"))
    assert again == plan
    assert [c.key for c in again.cells()] == ["agent-u1", "agent-u4", "single-u1", "single-u4"]


@pytest.mark.parametrize("kwargs, message", [
    ({"modes": ["single", "zoom"]}, "unknown mode 'zoom'"),
    ({"users": [0]}, "positive concurrency"),
    ({"duration_s": 0}, "must be positive"),
])  # fmt: skip
def test_plan_refuses_bad_values(kwargs, message):
    base = dict(base_url="http://h:1", model="m", benchmark="b", modes=["single"], users=[1], duration_s=1, slo_ms=1)
    with pytest.raises(ValueError, match=message):
        SweepPlan(**(base | kwargs))


def test_old_mode_names_are_read_as_the_api_names():
    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        plan = SweepPlan(base_url="http://h:1", model="m", benchmark="b", modes=["global", "attention-zoom", "single"],
                         users=[1], duration_s=1, slo_ms=1)
    assert plan.modes == ["single", "attention_zoom"] and len(caught) == 2


@pytest.fixture
def workload(zoomworld, tiny_plan):
    plan = tiny_plan("http://127.0.0.1:9/v1", modes=["single", "regional", "agent", "attention_zoom"])
    return Workload(plan, load_benchmark(zoomworld))


def test_each_mode_sends_its_request(workload):
    workload.start_cell("single", "regional", "agent", "attention_zoom")
    item = workload.next_item("agent")
    bodies = {mode: json.loads(workload.payload(mode, item)) for mode in ("single", "regional", "agent",
                                                                           "attention_zoom")}
    for body in bodies.values():
        assert body["model"] == "qwen3_vl" and body["stream"] and body["stream_options"] == {"include_usage": True}
        assert body["mm_processor_kwargs"] == {"max_pixels": 128 * 128}
        (message,) = body["messages"]
        assert [p["type"] for p in message["content"]] == ["image_url", "text"]
        assert message["content"][1]["text"] == item.prompt
    url = lambda mode: bodies[mode]["messages"][0]["content"][0]["image_url"]["url"]  # noqa: E731
    assert url("single") == url("agent") == url("attention_zoom") != url("regional")  # regional: the crop
    assert "zwz_mode" not in bodies["single"] and "zwz_mode" not in bodies["regional"]
    assert bodies["agent"]["zwz_mode"] == "agent" and bodies["agent"]["zwz_agent"] == {"max_turns": 2, "fixed_turns": 1}
    assert bodies["attention_zoom"]["zwz_mode"] == "attention_zoom"
    assert workload.root == "http://127.0.0.1:9" and workload.api_base == "http://127.0.0.1:9/v1"


def test_cells_replay_the_same_items_and_client_side_modes_send_urls(workload):
    workload.start_cell("single")
    first = [workload.next_item("single").id for _ in range(6)]
    workload.start_cell("single")
    assert [workload.next_item("single").id for _ in range(6)] == first == [*first[:4], *first[:2]]
    client = Workload(type(workload.plan)(**{**vars(workload.plan), "settings": type(workload.plan.settings)(
        **{**vars(workload.plan.settings), "agent_side": "client"})}), workload.items)
    assert not client.one_request("agent") and client.one_request("single")
    assert client.payload("agent", workload.items[0]).startswith("data:image/png;base64,")


def test_scores_fire_rows(workload):
    fired = []
    fire = lambda *event: fired.append(event)  # noqa: E731
    item = next(i for i in workload.items if i.multiple_choice)
    workload.score(fire, "single", item, item.answer, 12.0)
    workload.score(fire, "single", item, "Answer: " + ("B" if item.answer != "B" else "C"), 13.0)
    workload.score(fire, "single", item, "zzz qqq", 14.0)
    assert fired[0] == (SCORE, "single", 12.0, None) and fired[1] == (SCORE, "single", 13.0, WRONG)
    assert fired[2][0] == UNSCORED and fired[2][2] is None and "no --judge-url" in fired[2][3]
