"""The engine contract is declared (``zwz.server.engines.base.Engine``), not probed.

An engine without attention maps gets the one 501 on every attention feature, before it is asked to do
anything; queue depth and batch listeners reach /metrics through the protocol; an object that is not an
engine is refused when the app is assembled (so the vLLM-parametrized server tests check that engine too).
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zwz.server.engines.base import Engine, missing_members

REFUSAL = ("the scripted engine cannot compute attention maps; serve with --engine transformers or --engine vllm, "
           "which both make them")


def _image_message(data_url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                         {"type": "text", "text": "What is on the sign?"}]}]


def _samples(url: str) -> dict[str, float]:
    """The /metrics samples by name, labels (other than histogram buckets) folded into the name."""
    text = httpx.get(url + "/metrics").text
    return {s.name + "".join(f"[{v}]" for k, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if "le" not in s.labels}


def test_every_attention_feature_gives_the_same_501_without_maps(serve_scripted, scripted_engine, images):
    engine = scripted_engine("unused")
    picture = images.png_data_url(64, 64)
    requests = {
        "chat zwz_attention": ("/v1/chat/completions", {"model": "scripted", "messages": _image_message(picture),
                                                        "zwz_attention": {}}),
        "/v1/zoom/attention": ("/v1/zoom/attention", {"image": picture, "question": "What is on the sign?"}),
        "attention_zoom mode": ("/v1/chat/completions", {"model": "scripted", "messages": _image_message(picture),
                                                         "zwz_mode": "attention_zoom"}),
    }
    with serve_scripted(engine) as url:
        for name, (path, body) in requests.items():
            r = httpx.post(url + path, json=body, timeout=30)
            assert r.status_code == 501, (name, r.text)
            assert r.json()["error"]["message"] == REFUSAL, name
            assert r.json()["error"]["code"] == "not_supported", name
        assert _samples(url)["zwz_request_errors_total[501]"] == 3
        assert engine.requests == []  # refused before the engine was asked for anything
        r = httpx.post(url + "/v1/chat/completions", json={"model": "scripted", "messages": _image_message(picture)},
                       timeout=30)  # a plain request is still answered
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "unused", r.text


def test_queue_depth_and_batch_listeners_reach_metrics(serve_scripted, scripted_engine):
    engine = scripted_engine("hi", queue_depth=3)
    with serve_scripted(engine) as url:
        assert len(engine.batch_listeners) == 1  # the app's batch-size histogram
        r = httpx.post(url + "/v1/chat/completions", json={"model": "scripted",
                                                           "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"
        samples = _samples(url)
    assert samples["zwz_queue_depth"] == 3
    assert samples["zwz_batch_size_count"] == 1 and samples["zwz_batch_size_sum"] == 1


def test_an_object_missing_members_is_refused_at_assembly(scripted_engine):
    from zwz.server.api.app import create_app
    from zwz.server.settings import ServerSettings

    engine = scripted_engine()
    del engine.batch_listeners
    assert missing_members(engine) == ["batch_listeners"] and not isinstance(engine, Engine)
    with pytest.raises(TypeError, match="ScriptedEngine does not implement the Engine protocol .*: it lacks "
                                        "batch_listeners"):
        create_app(ServerSettings(), engine)


def test_transformers_engine_implements_the_protocol_with_maps(tiny_models):
    from zwz.server.engines.transformers_attention import TransformersAttentionMaps
    from zwz.server.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(tiny_models["qwen2_5_vl"])
    assert missing_members(engine) == [] and isinstance(engine, Engine)
    assert isinstance(engine.attention_maps, TransformersAttentionMaps)
    assert engine.queue_depth == 0 and engine.batch_listeners == []
