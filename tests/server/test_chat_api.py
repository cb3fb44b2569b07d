"""The OpenAI-compatible API, driven by the official ``openai`` client against a live uvicorn server."""

from __future__ import annotations

import asyncio
import struct
import zlib

import httpx
import openai
import pytest

MODEL = "qwen3_vl"  # served under the folder name

# Every test runs against both engines (vLLM is skipped, saying why, where it is not installed).
pytestmark = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def image_message(url: str, text: str = "What color is the car?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}]


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_non_streaming_with_image(client, images):
    r = client.chat.completions.create(model=MODEL, messages=image_message(images.png_data_url()), max_tokens=8)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert r.usage.model_extra["visual_tokens"] == (448 // 16) ** 2 // 4  # Qwen3-VL: 16 px patches, 2x2 merge
    assert r.usage.prompt_tokens > r.usage.model_extra["visual_tokens"]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_matches_non_streaming(client, images):
    messages = image_message(images.data_url(images.noise(320, 256)))
    full = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12)
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_stream_without_usage_ends_with_done(server, images):
    body = {"model": MODEL, "messages": image_message(images.png_data_url()), "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server[0] + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert '"usage"' not in "".join(lines)


def test_sampling_seed_and_stop(client, images):
    messages = image_message(images.png_data_url(color=(10, 200, 10)))
    a = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=1.0, seed=7)
    b = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=1.0, seed=7)
    assert a.choices[0].message.content == b.choices[0].message.content
    greedy = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10).choices[0].message.content
    stop = greedy.strip()[2:5]
    assert stop
    stopped = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, stop=[stop])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == greedy[: greedy.index(stop)]


def test_pixel_budget_per_request(client, images):
    messages = image_message(images.png_data_url(1024, 1024))
    big = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)
    small = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1,
                                           extra_body={"mm_processor_kwargs": {"max_pixels": 256 * 256}})
    assert small.usage.model_extra["visual_tokens"] == (256 // 32) ** 2
    assert big.usage.model_extra["visual_tokens"] > small.usage.model_extra["visual_tokens"]


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but carries almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bomb_url() -> str:
    import base64
    return "data:image/png;base64," + base64.b64encode(_huge_png_header(50_000, 50_000)).decode()


BAD_CONTENT = {  # url, code, message
    "bad_base64": ("data:image/png;base64,@@@not-base64@@@", "invalid_base64", r"image data is not valid base64"),
    "not_an_image": ("data:image/png;base64,aGVsbG8gd29ybGQ=", "invalid_image",
                     r"the data is not an image this server can read \(header: cannot identify image file"),
    "unsupported_scheme": ("ftp://example.com/a.png", "unsupported_url",
                           r"image_url must be a data: URL \(base64\), or file:// / http\(s\):// where"),
    "remote_refused": ("http://127.0.0.1:1/a.png", "remote_media_disabled",
                       r"http\(s\) image URLs are disabled on this server; send the image as a base64 data URL"),
    "local_refused": ("file:///etc/hosts", "local_media_disabled", r"file:// image URLs are disabled on this server"),
    "bomb": (None, "image_too_large", r"image has far too many pixels \(decompression bomb refused\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_bad_images_get_400_then_server_still_answers(client, images, case, good_request):
    url, code, message = BAD_CONTENT[case]
    url = url or _bomb_url()
    with pytest.raises(openai.BadRequestError, match=message) as info:
        client.chat.completions.create(model=MODEL, messages=image_message(url), max_tokens=2)
    assert info.value.status_code == 400
    assert info.value.body["code"] == code
    assert info.value.body["type"] == "invalid_request_error"
    good_request(client, MODEL)


def test_unsupported_format_tiff(client, images, good_request):
    with pytest.raises(openai.BadRequestError, match=r"image format TIFF is not supported \(use BMP, GIF, JPEG, PNG"
                       ) as info:
        client.chat.completions.create(model=MODEL, messages=image_message(images.png_data_url(fmt="TIFF")), max_tokens=2)
    assert info.value.body["code"] == "unsupported_format"
    good_request(client, MODEL)


@pytest.mark.parametrize("body, param", [
    ('{"model": "qwen3_vl", "messages": [', None),
    ('{"model": "qwen3_vl"}', "messages"),
    ('{"model": "qwen3_vl", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}', "temperature"),
    ('{"model": "qwen3_vl", "messages": [{"role": "user", "content": "hi"}], "n": 3}', "n"),
])
def test_malformed_requests_get_400_envelope(server, client, images, body, param, good_request):
    r = httpx.post(server[0] + "/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param:
        assert param in (error["param"] or "")
    good_request(client, MODEL)


def test_unknown_model_404(client, images, good_request):
    with pytest.raises(openai.NotFoundError, match=r"the model 'gpt-9' does not exist; this server serves qwen3_vl"
                       ) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"
    good_request(client, MODEL)


def test_file_urls_under_allowed_dir_only(serve, tiny_models, tmp_path, images, good_request):
    allowed = tmp_path / "media"
    allowed.mkdir()
    images.noise(64, 64).save(allowed / "ok.png")
    images.noise(64, 64).save(tmp_path / "outside.png")
    with serve(tiny_models["qwen2_5_vl"], allowed_local_media_dir=str(allowed)) as (url, _):
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="qwen2_5_vl", messages=image_message(f"file://{allowed}/ok.png"), max_tokens=2)
        assert r.usage.model_extra["visual_tokens"] > 0
        for bad in (f"file://{tmp_path}/outside.png", f"file://{allowed}/../outside.png"):
            with pytest.raises(openai.BadRequestError,
                               match=r"file:// image URL is outside the folder this server allows") as info:
                c.chat.completions.create(model="qwen2_5_vl", messages=image_message(bad), max_tokens=2)
            assert info.value.body["code"] == "local_media_forbidden"
        good_request(c, "qwen2_5_vl")


@pytest.fixture(scope="module")
def strict_server(serve, tiny_models):
    """A server with every limit small, so each error is easy to reach."""
    with serve(tiny_models["qwen3_vl"], api_key="sekret", max_body_bytes=200_000, max_model_len=300,
               max_queue=1, max_batch_size=1, max_image_pixels=1_000_000, max_images_per_request=2) as (url, app):
        yield url, app


@pytest.fixture(scope="module")
def strict_client(strict_server):
    return openai.OpenAI(base_url=strict_server[0] + "/v1", api_key="sekret", max_retries=0)


def test_401_wrong_or_missing_key(strict_server, strict_client, images, good_request):
    for key in ("wrong", ""):
        c = openai.OpenAI(base_url=strict_server[0] + "/v1", api_key=key or "x", max_retries=0,
                          default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError, match=r"invalid or missing API key \(send 'Authorization: Bearer"
                           ) as info:
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert info.value.status_code == 401
        assert info.value.body["code"] == "invalid_api_key"
    assert httpx.get(strict_server[0] + "/health").status_code == 200  # ops endpoints stay open
    good_request(strict_client, MODEL)


def test_413_body_too_large(strict_server, strict_client, images, good_request):
    payload = image_message(images.data_url(images.noise(600, 600)))  # ~1 MB of PNG noise
    with pytest.raises(openai.APIStatusError, match=r"request body is over the limit of 200000 bytes") as info:
        strict_client.chat.completions.create(model=MODEL, messages=payload, max_tokens=2)
    assert info.value.status_code == 413
    assert info.value.body["code"] == "request_too_large"
    good_request(strict_client, MODEL)


def test_too_many_images_and_pixel_limit(strict_client, images, good_request):
    url = images.png_data_url(64, 64)
    three = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 3}]
    with pytest.raises(openai.BadRequestError, match=r"3 images in one request; this server allows at most 2") as info:
        strict_client.chat.completions.create(model=MODEL, messages=three, max_tokens=2)
    assert info.value.body["code"] == "too_many_images"
    with pytest.raises(openai.BadRequestError,
                       match=r"image is 1100x1000 = 1100000 pixels, over the limit of 1000000") as info:
        strict_client.chat.completions.create(model=MODEL, messages=image_message(images.png_data_url(1100, 1000)),
                                              max_tokens=2)
    assert info.value.body["code"] == "image_too_large"
    good_request(strict_client, MODEL)


def test_prompt_longer_than_context(strict_client, images, good_request):
    long_text = "describe every detail " * 60
    with pytest.raises(openai.BadRequestError, match=r"the prompt has \d+ tokens \(196 of them visual\), over this "
                                                     r"model's context of 300; send a smaller image") as info:
        strict_client.chat.completions.create(model=MODEL, messages=image_message(images.png_data_url(), long_text),
                                              max_tokens=2)
    assert info.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError,
                       match=r"prompt \(\d+ tokens\) \+ max_tokens \(250\) exceeds the context of 300 tokens") as info:
        strict_client.chat.completions.create(model=MODEL, messages=image_message(images.png_data_url()), max_tokens=250)
    assert info.value.body["param"] == "max_tokens"
    good_request(strict_client, MODEL)


def test_503_when_queue_full(strict_server, strict_client, images, good_request):
    async def burst():
        c = openai.AsyncOpenAI(base_url=strict_server[0] + "/v1", api_key="sekret", max_retries=0)
        messages = image_message(images.png_data_url(64, 64))
        calls = [c.chat.completions.create(model=MODEL, messages=messages, max_tokens=40) for _ in range(12)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(burst())
    refused = [r for r in results if isinstance(r, openai.APIStatusError)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert refused and answered
    assert all(r.status_code == 503 and r.body["code"] == "queue_full" for r in refused)
    assert len(refused) + len(answered) == 12
    good_request(strict_client, MODEL)


def test_concurrent_requests_are_batched(server, serve_engine, images, until):
    """Requests waiting together decode together. Transformers: ten queued behind a running batch (held until
    all ten wait) form the next batches, 8 (max_batch_size) and 2. vLLM: ten streams all decode at once."""
    url, app = server
    engine = app.state.engine
    seen_before = len(engine.batch_sizes)

    def ask(c, i: int, max_tokens: int, stream: bool = False):
        return c.chat.completions.create(model=MODEL, max_tokens=max_tokens, stream=stream,
                                         messages=image_message(images.png_data_url(color=(i * 20, 0, 0))))

    async def first_token(stream) -> None:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                return
        raise AssertionError("the stream ended before its first token")

    async def queued_behind_a_running_batch():
        c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        holder = await ask(c, 12, 2000, stream=True)
        await first_token(holder)  # its batch of one is decoding: the decode thread is busy
        calls = [asyncio.ensure_future(ask(c, i, 16)) for i in range(10)]
        await until(lambda: engine.queue_depth == 10, "ten requests waiting behind the running batch")
        await holder.close()  # the held batch stops; everything waiting is taken
        return await asyncio.gather(*calls)

    async def decoding_at_once():
        c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        streams = await asyncio.gather(*(ask(c, i, 2000, stream=True) for i in range(10)))
        await asyncio.gather(*(first_token(s) for s in streams))
        # Each has its first token and none has finished: all ten are running in vLLM, none waits.
        assert (engine._in_flight, engine.queue_depth) == (10, 0)
        for s in streams:
            await s.close()
        await until(lambda: engine._in_flight == 0, "the closed streams leaving vLLM")

    if serve_engine == "transformers":
        results = asyncio.run(queued_behind_a_running_batch())
        assert len(results) == 10 and all(r.usage.completion_tokens == 16 for r in results)
        assert engine.batch_sizes[seen_before:] == [1, 8, 2]
    else:
        asyncio.run(decoding_at_once())
        assert sum(engine.batch_sizes[seen_before:]) == 10


def test_client_disconnect_mid_stream_cancels_decoding(server, client, images, good_request):
    engine = server[1].state.engine
    cancelled_before = engine.cancelled_rows
    body = {"model": MODEL, "messages": image_message(images.png_data_url()), "max_tokens": 2000, "stream": True}
    with httpx.stream("POST", server[0] + "/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # hang up after the first token
    good_request(client, MODEL)  # queued behind the cancelled row: answered only once it stopped
    assert engine.cancelled_rows == cancelled_before + 1
