"""README claims about the server that no other test checked, each against a live uvicorn server on the tiny
Qwen3-VL (transformers engine): the context length in ``/v1/models``, the ``/health`` body, the image formats,
``--allow-remote-media`` (a local HTTP server in a thread), 404 on an unknown route, an error inside a stream
that already started, ``zwz_request_errors_total`` counting 413s and in-stream errors, and
``mm_processor_kwargs`` and layer lists on ``/v1/zoom/attention``.

Every error case is followed by a request that succeeds.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

MODEL = "qwen3_vl"  # served under the folder name
QUESTION = "What is written on the small sign?"


@pytest.fixture(scope="module")
def server(serve, tiny_models) -> Iterator[str]:
    with serve(tiny_models[MODEL]) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def image_message(url: str, text: str = "What color is the car?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def answer(client: openai.OpenAI, url: str, model: str = MODEL, **extra):
    """A greedy 6-token answer on one image (greedy, so the same pixels give the same tokens)."""
    return client.chat.completions.create(model=model, messages=image_message(url), max_tokens=6, temperature=0,
                                          **extra)


def data_url(data: bytes, subtype: str) -> str:
    return f"data:image/{subtype};base64," + base64.b64encode(data).decode()


def good_request(client: openai.OpenAI, images, model: str = MODEL) -> None:
    r = answer(client, images.png_data_url(64, 64), model)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1


def samples(url: str) -> dict[str, float]:
    """/metrics samples by name, labels (other than histogram buckets) folded into the name."""
    text = httpx.get(url + "/metrics").text
    return {s.name + "".join(f"[{v}]" for _, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if "le" not in s.labels}


# -- /v1/models and /health ------------------------------------------------------------------------------------
def test_models_lists_the_folder_name_and_the_models_context_length(server, tiny_models):
    config = json.loads((tiny_models[MODEL] / "config.json").read_text())
    context = config["text_config"]["max_position_embeddings"]
    body = httpx.get(server + "/v1/models").json()
    assert body["object"] == "list" and len(body["data"]) == 1
    card = body["data"][0]
    assert {k: card[k] for k in ("id", "object", "owned_by", "max_model_len")} == {
        "id": MODEL, "object": "model", "owned_by": "zwz", "max_model_len": context}
    assert context == 32768


def test_health_body_is_liveness_engine_model_and_random_weights(server):
    r = httpx.get(server + "/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "engine", "model", "random_weights", "trained_on", "uptime_s"}
    assert {k: body[k] for k in ("status", "engine", "model", "random_weights", "trained_on")} == {
        "status": "ok", "engine": "transformers", "model": MODEL, "random_weights": True, "trained_on": None}
    assert isinstance(body["uptime_s"], float) and body["uptime_s"] >= 0.0


# -- image formats ---------------------------------------------------------------------------------------------
def few_colour_picture() -> Image.Image:
    """224x224 in 16 flat 56 px blocks of distinct colours: GIF's 256-colour palette holds it exactly."""
    rng = np.random.default_rng(5)
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    blocks = colours.reshape(4, 4, 3).repeat(56, axis=0).repeat(56, axis=1)
    return Image.fromarray(blocks)


ENCODINGS = {"WEBP": {"lossless": True}, "GIF": {}, "BMP": {}}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "GIF", "BMP"])
def test_each_listed_format_decodes_and_answers(client, images, fmt):
    picture = few_colour_picture()
    buf = io.BytesIO()
    picture.save(buf, fmt, **ENCODINGS.get(fmt, {}))
    decoded = Image.open(io.BytesIO(buf.getvalue()))
    assert decoded.format == fmt
    reply = answer(client, data_url(buf.getvalue(), fmt.lower()))
    png = answer(client, images.data_url(picture, "PNG"))
    assert reply.usage.model_extra["visual_tokens"] == png.usage.model_extra["visual_tokens"] == (224 // 32) ** 2
    assert reply.usage.completion_tokens == 6
    if fmt != "JPEG":  # lossless here: the same pixels, so the same greedy tokens as the PNG
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(picture))
        assert reply.choices[0].message.content == png.choices[0].message.content


# -- remote media ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media_site(tmp_path_factory) -> Iterator[tuple[str, list[str], Path]]:
    """A plain HTTP server (a thread) serving a folder; yields (base URL, the paths it was asked for, folder)."""
    folder = tmp_path_factory.mktemp("media-site")
    asked: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            asked.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", asked, folder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_http_images_are_refused_and_never_fetched_by_default(client, images, media_site):
    site, asked, folder = media_site
    images.noise(96, 64, seed=2).save(folder / "refused.png")
    with pytest.raises(openai.BadRequestError) as info:
        answer(client, f"{site}/refused.png")
    assert info.value.body["code"] == "remote_media_disabled"
    assert "/refused.png" not in asked  # by default the server fetches nothing
    good_request(client, images)


def test_allow_remote_media_fetches_the_image(serve, tiny_models, images, media_site):
    site, asked, folder = media_site
    picture = images.noise(96, 64, seed=3)
    picture.save(folder / "sign.png")
    with serve(tiny_models[MODEL], allow_remote_media=True) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        fetched = answer(c, f"{site}/sign.png")
        assert asked.count("/sign.png") == 1
        inline = answer(c, data_url((folder / "sign.png").read_bytes(), "png"))
        assert fetched.choices[0].message.content == inline.choices[0].message.content
        assert fetched.usage.model_extra["visual_tokens"] == inline.usage.model_extra["visual_tokens"] == 6
        with pytest.raises(openai.BadRequestError) as info:
            answer(c, f"{site}/missing.png")  # the site answers 404
        assert info.value.body["code"] == "image_fetch_failed"
        assert "404" in info.value.body["message"]
        good_request(c, images)


# -- routes ----------------------------------------------------------------------------------------------------
def test_unknown_route_is_a_404_in_the_openai_envelope(server, client, images):
    for method, path in (("GET", "/v1/nope"), ("POST", "/v2/chat/completions")):
        r = httpx.request(method, server + path, json={})
        assert r.status_code == 404
        assert r.json() == {"error": {"message": f"no route {method} {path}", "type": "not_found_error",
                                      "param": None, "code": None}}
    good_request(client, images)


# -- /v1/zoom/attention ----------------------------------------------------------------------------------------
def zoom(server: str, **body) -> dict:
    r = httpx.post(server + "/v1/zoom/attention", json={"question": QUESTION, "heatmap": False, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_attention_mm_processor_kwargs_set_the_pixel_budget(server, client, images):
    big = images.data_url(images.noise(448, 448, seed=4))
    assert zoom(server, image=big)["grid_shape"] == [14, 14]  # 448 px / (16 px patches x 2x2 merge)
    budget = {"max_pixels": 224 * 224}
    smaller = zoom(server, image=big, mm_processor_kwargs=budget)
    assert smaller["grid_shape"] == [7, 7] and smaller["visual_tokens"] == 49
    chat = answer(client, big, extra_body={"mm_processor_kwargs": budget})
    assert chat.usage.model_extra["visual_tokens"] == 49  # the same budget on chat
    small = images.data_url(images.noise(64, 64, seed=4))
    assert zoom(server, image=small, mm_processor_kwargs={"min_pixels": 256 * 256})["grid_shape"] == [8, 8]


def test_attention_layer_lists(server, images):
    url = images.data_url(images.noise(320, 256, seed=6))
    box = [32, 32, 160, 128]
    both = zoom(server, image=url, layer=[0, -1], box=box)
    assert set(both["layer_grids"]) == set(both["coverage_by_layer"]) == {"0", "5"}  # -1: the last of 6 layers
    for layer in (0, 5):
        alone = zoom(server, image=url, layer=layer, box=box)
        assert "layer_grids" not in alone or alone["layer_grids"] is None
        np.testing.assert_allclose(np.array(both["layer_grids"][str(layer)]), np.array(alone["grid"]), rtol=1e-5)
        assert both["coverage_by_layer"][str(layer)] == pytest.approx(alone["coverage"], rel=1e-5)


# -- errors inside a started stream, and the error counter -----------------------------------------------------
@pytest.fixture(scope="module")
def nan_model(tiny_models, tmp_path_factory) -> Path:
    """The tiny Qwen3-VL with its final norm set to NaN: every logit is NaN, so greedy decoding still runs
    (argmax picks a token) but sampling fails inside the engine, after the stream's first event went out."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("nan-model") / "broken"
    shutil.copytree(tiny_models[MODEL], folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.language_model.norm.weight"].fill_(float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


STREAM_ERROR = {"error": {"message": "internal error: RuntimeError", "type": "internal_error", "param": None,
                          "code": None}}


def test_an_error_inside_a_started_stream_is_the_envelope_then_done_and_counted(serve, nan_model, images):
    with serve(nan_model, max_body_bytes=100_000) as (url, _):
        before = samples(url)
        body = {"model": "broken", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                "temperature": 1.0, "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200  # the stream had started: the status was already sent
            events = [line for line in r.iter_lines() if line]
        first = json.loads(events[0].removeprefix("data: "))
        assert first["object"] == "chat.completion.chunk"
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert [json.loads(e.removeprefix("data: ")) for e in events[1:-1]] == [STREAM_ERROR]
        assert events[-1] == "data: [DONE]"

        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIError, match="^internal error: RuntimeError$"):
            for _ in c.chat.completions.create(model="broken", messages=body["messages"], max_tokens=4,
                                               temperature=1.0, stream=True):
                pass
        with pytest.raises(openai.APIStatusError) as info:  # over --max-body-bytes: refused before parsing
            answer(c, images.data_url(images.noise(300, 300)), model="broken")
        assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"
        greedy = c.chat.completions.create(model="broken", messages=body["messages"], max_tokens=3, temperature=0)
        assert greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 3
        after = samples(url)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta("zwz_request_errors_total[500]") == 2  # both in-stream errors
    assert delta("zwz_request_errors_total[413]") == 1
    assert delta("zwz_requests_total[single]") == 1  # only the greedy answer succeeded
