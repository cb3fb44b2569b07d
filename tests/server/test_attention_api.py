"""POST /v1/zoom/attention and the chat extension, end to end on a live server."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

MODEL = "qwen2_5_vl"
QUESTION = "What is written on the small sign?"


@pytest.fixture(scope="module")
def served(serve, tiny_models):
    with serve(tiny_models["qwen2_5_vl"]) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def picture(images):
    return images.noise(560, 420, seed=11)


def post(server, **body):
    return httpx.post(server + "/v1/zoom/attention", json=body, timeout=120)


def test_attention_endpoint(server, images, picture):
    r = post(server, image=images.data_url(picture), question=QUESTION, box=[100, 50, 300, 200])
    assert r.status_code == 200, r.text
    body = r.json()
    rows, cols = body["grid_shape"]
    assert (rows, cols) == (420 // 28, 560 // 28)  # Qwen2.5-VL: 14 px patches, 2x2 merge
    grid = np.array(body["grid"])
    assert grid.shape == (rows, cols) and (grid > 0).all()
    assert body["layer"] == 3  # relative depth 24/36 of 6 layers
    assert body["image_size"] == [560, 420]
    assert body["visual_tokens"] == rows * cols
    assert 0.0 < body["coverage"] < 1.0
    x1, y1, x2, y2 = body["suggested_box"]
    assert 0 <= x1 < x2 <= 560 and 0 <= y1 < y2 <= 420
    heatmap = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    assert heatmap.format == "PNG" and heatmap.size == (560, 420)
    assert {"prefill", "generic_suffix", "kernel", "total"} <= set(body["timings_ms"])
    metrics = httpx.get(server + "/metrics").text
    assert 'zwz_requests_total{mode="attention_map"}' in metrics


def test_all_layers_and_reference_agree(server, images, picture):
    url = images.data_url(picture)
    fast = post(server, image=url, question=QUESTION, layer="all", box=[0, 0, 280, 210], heatmap=False).json()
    ref = post(server, image=url, question=QUESTION, layer="all", method="reference", box=[0, 0, 280, 210],
               heatmap=False).json()
    assert set(fast["layer_grids"]) == {str(i) for i in range(6)}
    for layer, grid in fast["layer_grids"].items():
        a, b = np.array(grid), np.array(ref["layer_grids"][layer])
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    assert fast["coverage_by_layer"] == pytest.approx(ref["coverage_by_layer"], rel=1e-4)
    assert "heatmap_png" not in fast or fast["heatmap_png"] is None


@pytest.mark.parametrize("body, param, code", [
    ({"question": QUESTION}, "image", None),
    ({"image": "IMAGE", "question": QUESTION, "box": [500, 10, 700, 100]}, "box", "box_out_of_range"),
    ({"image": "IMAGE", "question": QUESTION, "box": [50, 10, 40, 100]}, "box", "box_out_of_range"),
    ({"image": "IMAGE", "question": QUESTION, "box": [1, 2, 3]}, "box", None),
    ({"image": "IMAGE", "question": QUESTION, "layer": 6}, "layer", "layer_out_of_range"),
    ({"image": "IMAGE", "question": QUESTION, "layer": [0, -9]}, "layer", "layer_out_of_range"),
    ({"image": "IMAGE", "question": QUESTION, "method": "magic"}, "method", None),
    ({"image": "data:image/png;base64,AAAA", "question": QUESTION}, "messages", "invalid_image"),
])
def test_bad_attention_requests_get_400(server, images, picture, body, param, code):
    body = {k: images.data_url(picture) if v == "IMAGE" else v for k, v in body.items()}
    r = post(server, **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert param in (error["param"] or "")
    if code:
        assert error["code"] == code
    assert post(server, image=images.data_url(picture), question=QUESTION, heatmap=False).status_code == 200


def test_chat_extension_returns_the_same_map(server, images, picture):
    url = images.data_url(picture)
    direct = post(server, image=url, question=QUESTION, box=[100, 50, 300, 200], heatmap=False).json()
    client = openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": QUESTION}]}]
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6,
                                       extra_body={"zwz_attention": {"box": [100, 50, 300, 200], "heatmap": True}})
    assert r.choices[0].message.content == plain.choices[0].message.content  # the answer is unchanged
    assert "zwz_attention" not in (plain.model_extra or {})
    mapped = r.model_extra["zwz_attention"]
    np.testing.assert_allclose(np.array(mapped["grid"]), np.array(direct["grid"]), rtol=1e-5)
    assert mapped["coverage"] == pytest.approx(direct["coverage"], rel=1e-5)
    assert mapped["heatmap_png"]

    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True,
                                            extra_body={"zwz_attention": {}})
    finals = [c for c in stream if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    np.testing.assert_allclose(np.array(finals[0].model_extra["zwz_attention"]["grid"]), np.array(direct["grid"]),
                               rtol=1e-5)


def test_chat_extension_without_image_is_400(server, good_request):
    r = httpx.post(server + "/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "zwz_attention": {}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "zwz_attention"
    good_request(openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0), MODEL)


def test_chat_batch_with_and_without_maps(served, images, picture, until):
    """Mapped requests run alone; plain ones still batch; all are answered. The eight are queued together
    behind a running request (held until all eight wait), so the batches they form are known exactly."""
    import asyncio

    server, app = served
    engine = app.state.engine
    url = images.data_url(picture)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": QUESTION}]}]
    mapped = [i % 3 == 0 for i in range(8)]  # 3 mapped, 5 plain: within max_batch_size (8)

    async def go():
        c = openai.AsyncOpenAI(base_url=server + "/v1", api_key="x", max_retries=0)
        holder = await c.chat.completions.create(model=MODEL, messages=messages, max_tokens=2000, stream=True)
        async for chunk in holder:  # its first token: the decode thread is busy with it
            if chunk.choices and chunk.choices[0].delta.content:
                break
        seen_before = len(engine.batch_sizes)
        calls = [asyncio.ensure_future(c.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=4, extra_body={"zwz_attention": {}} if m else None))
            for m in mapped]
        await until(lambda: engine.queue_depth == len(mapped), "eight requests waiting behind the running one")
        await holder.close()
        return await asyncio.gather(*calls), engine.batch_sizes[seen_before:]

    results, batches = asyncio.run(go())
    assert batches == [5, 1, 1, 1]  # the plain five together, each mapped one alone
    assert [("zwz_attention" in (r.model_extra or {})) for r in results] == mapped
    assert len({json.dumps(r.model_extra["zwz_attention"]["grid"]) for r in results if r.model_extra}) == 1
