"""Hostile images and media paths on a live server (issue 11, defects 3-6 and 8): each is a clear 400, never a
500, a hang or a read of the whole thing, and the server answers a good request right after.

The hostile files are made by hand in pytest's tmp dirs: PNGs with a decompression-bomb iCCP/zTXt/iTXt chunk,
a sparse 1 GiB file, a FIFO, symlinks out of the allowed folder, a remote server that lies about its size.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from PIL import Image, PngImagePlugin

from zwz.serve_process import free_port

MODEL = "qwen3_vl"
BOTH_ENGINES = pytest.mark.parametrize("serve_engine", ["transformers", "vllm"], indirect=True)
TRANSFORMERS = pytest.mark.parametrize("serve_engine", ["transformers"], indirect=True)  # attention maps


# -- hand-made files --------------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *, before_idat: bytes = b"", pixels: bool = True) -> bytes:
    """An RGB PNG written chunk by chunk; ``pixels=False`` leaves the IDAT nearly empty (a header-only image)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = height if pixels else 1
    raw = b"".join(compressor.compress(b"\0" + b"\x80" * (width * 3)) for _ in range(rows)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + before_idat + _chunk(b"IDAT", raw)
            + _chunk(b"IEND", b""))


# Compressed text/ICC data that inflates past Pillow's MAX_TEXT_CHUNK (1 MiB): ~1 KB on the wire.
_BOMB = zlib.compress(b"\0" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), 9)


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def message(url: str, text: str = "What is in the picture?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


# -- the servers ------------------------------------------------------------------------------------------------
class _LyingMedia(BaseHTTPRequestHandler):
    """/big declares 1 GB and sends 16 bytes, then stalls; /endless streams chunks forever; /ok is a real PNG."""

    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/ok":
            body = png(64, 48)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("content-length", str(10**9))
            self.end_headers()
            self.wfile.write(b"\x89PNG\r\n\x1a\n" * 2)
            self.wfile.flush()
            self.release.wait(30)  # a reader that waits for the rest waits here until the test ends
        else:
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            block = b"\0" * 65536
            try:
                while not self.release.is_set():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            except OSError:  # the reader hung up at its cap
                pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def media_host() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _LyingMedia)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    _LyingMedia.release.set()
    httpd.shutdown()


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "ok.png").write_bytes(png(64, 48))
    (root / "outside.png").write_bytes(png(64, 48))
    (allowed / "escape.png").symlink_to(root / "outside.png")
    (allowed / "zero").symlink_to("/dev/zero")
    (allowed / "sub").mkdir()
    os.mkfifo(allowed / "fifo.png")
    with open(allowed / "huge.png", "wb") as f:  # sparse: 1 GiB on paper, no blocks on disk
        f.write(png(64, 48))
        f.truncate(1 << 30)
    return allowed


@pytest.fixture(scope="module")
def server(serve, tiny_models, media_dir) -> Iterator[str]:
    with serve(tiny_models["qwen3_vl"], allowed_local_media_dir=str(media_dir), allow_remote_media=True,
               remote_media_timeout_s=5) as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)


def good_request(client) -> None:
    """A normal request that must succeed after every refusal."""
    r = client.chat.completions.create(model=MODEL, messages=message(data_url(png(64, 48))), max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.model_extra["visual_tokens"] == 4  # 64x48 -> the 64x64 minimum budget -> 2x2 merged tokens


def refused(client, url: str, *, extra: dict | None = None, max_tokens: int = 2) -> dict:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=message(url), max_tokens=max_tokens, extra_body=extra)
    assert info.value.status_code == 400
    assert info.value.body["type"] == "invalid_request_error"
    return info.value.body


def attention(server: str, url: str, **body) -> httpx.Response:
    return httpx.post(server + "/v1/zoom/attention", json={"image": url, "question": "Where?", "heatmap": False,
                                                            **body}, timeout=120)


# -- defect 3: shapes the processor refuses ---------------------------------------------------------------------
@BOTH_ENGINES
@pytest.mark.parametrize("size", [(4000, 10), (10, 4000), (201, 1)])
@pytest.mark.parametrize("mode", ["single", "agent"])
def test_extreme_aspect_ratio_is_400(client, size, mode):
    body = refused(client, data_url(png(*size)), extra={"zwz_mode": mode})
    assert body["code"] == "image_aspect_ratio"
    assert f"{size[0]}x{size[1]}" in body["message"] and "200:1" in body["message"]
    good_request(client)


@BOTH_ENGINES
def test_aspect_ratio_at_the_processors_limit_is_answered(client):
    r = client.chat.completions.create(model=MODEL, messages=message(data_url(png(4000, 20))), max_tokens=2)
    assert r.usage.model_extra["visual_tokens"] == 125  # smart_resize: 4000x20 -> 4000x32 -> 125x1 merged tokens


@BOTH_ENGINES
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (3, 3), (200, 1)])
def test_tiny_images_are_answered(client, size):
    r = client.chat.completions.create(model=MODEL, messages=message(data_url(png(*size))), max_tokens=2)
    width, height = size
    expected = {(1, 1): 4, (1, 2): 6, (3, 3): 4, (200, 1): 29}[size]  # the processor's upscale to 64x64 px min
    assert r.usage.model_extra["visual_tokens"] == expected, (width, height)


@TRANSFORMERS
def test_attention_endpoint_refuses_extreme_aspect_ratio(server, client):
    r = attention(server, data_url(png(4000, 10)))
    assert r.status_code == 400 and r.json()["error"]["code"] == "image_aspect_ratio"
    ok = attention(server, data_url(png(64, 48)))
    assert ok.status_code == 200, ok.text
    assert ok.json()["image_size"] == [64, 48]


# -- defect 4: whatever Pillow refuses -------------------------------------------------------------------------
PILLOW_REFUSALS = {
    "iccp_bomb": png(8, 8, before_idat=_chunk(b"iCCP", b"icc\0\0" + _BOMB)),
    "ztxt_bomb": png(8, 8, before_idat=_chunk(b"zTXt", b"Comment\0\0" + _BOMB)),
    "itxt_bomb": png(8, 8, before_idat=_chunk(b"iTXt", b"Comment\0\1\0\0\0" + _BOMB)),
    "bad_crc": png(8, 8)[:29] + b"\0\0\0\0" + png(8, 8)[33:],
    "truncated_pixels": png(64, 64)[:-40],
    "zero_width": png(0, 8),
    "signature_only": b"\x89PNG\r\n\x1a\n",
    "truncated_jpeg": encoded(Image.new("RGB", (64, 64), (9, 99, 199)), "JPEG")[:300],
    "truncated_gif": encoded(Image.new("P", (64, 64), 3), "GIF")[:30],
    "bmp_bad_header": b"BM" + struct.pack("<IHHI", 100, 0, 0, 54) + struct.pack("<IiiHH", 9, 8, 8, 1, 24),
}


@BOTH_ENGINES
@pytest.mark.parametrize("case", sorted(PILLOW_REFUSALS))
def test_images_pillow_refuses_are_400(client, case):
    body = refused(client, data_url(PILLOW_REFUSALS[case]))
    assert body["code"] == "invalid_image"
    good_request(client)


@TRANSFORMERS
def test_attention_endpoint_refuses_a_text_chunk_bomb(server, client):
    r = attention(server, data_url(PILLOW_REFUSALS["ztxt_bomb"]))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    assert "MAX_TEXT_CHUNK" in r.json()["error"]["message"]
    good_request(client)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


ODD_BUT_FINE = {
    "animated_gif": (_animated_gif(), "image/gif"),
    "cmyk_jpeg": (encoded(Image.new("CMYK", (64, 48), (0, 100, 200, 0)), "JPEG"), "image/jpeg"),
    "la_png": (encoded(Image.new("LA", (64, 48), (100, 50)), "PNG"), "image/png"),
    "p_transparent_png": (encoded(Image.new("P", (64, 48), 0), "PNG", transparency=0), "image/png"),
    "i16_png": (encoded(Image.new("I;16", (64, 48), 60000), "PNG"), "image/png"),
    "rgba_webp": (encoded(Image.new("RGBA", (64, 48), (1, 2, 3, 0)), "WEBP"), "image/webp"),
    "one_bit_bmp": (encoded(Image.new("1", (64, 48), 1), "BMP"), "image/bmp"),
}


@BOTH_ENGINES
@pytest.mark.parametrize("case", sorted(ODD_BUT_FINE))
def test_odd_modes_and_animations_are_answered(client, case):
    raw, mime = ODD_BUT_FINE[case]
    r = client.chat.completions.create(model=MODEL, messages=message(data_url(raw, mime)), max_tokens=2)
    assert r.usage.model_extra["visual_tokens"] == 4


@TRANSFORMERS
def test_exif_rotated_photo_is_seen_upright(server, client):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    raw = encoded(Image.new("RGB", (96, 64), (10, 200, 30)), "JPEG", exif=exif.tobytes())
    r = attention(server, data_url(raw, "image/jpeg"), box=[0, 0, 64, 96])  # a box of the upright 64x96 image
    assert r.status_code == 200, r.text
    assert r.json()["image_size"] == [64, 96]
    good_request(client)


# -- defect 5: every bad file:// URL ----------------------------------------------------------------------------
BAD_FILE_URLS = {
    "nul": ("file://{d}/ok.png\x00.txt", "invalid_file_url"),
    "percent_nul": ("file://{d}/ok.png%00.txt", "invalid_file_url"),
    "newline": ("file://{d}/ok%0A.png", "invalid_file_url"),
    "other_host": ("file://example.com{d}/ok.png", "invalid_file_url"),
    "symlink_out": ("file://{d}/escape.png", "local_media_forbidden"),
    "symlink_device": ("file://{d}/zero", "local_media_forbidden"),
    "dotdot": ("file://{d}/../outside.png", "local_media_forbidden"),
    "percent_dotdot": ("file://{d}/%2e%2e/outside.png", "local_media_forbidden"),
    "directory": ("file://{d}/sub", "invalid_file_url"),
    "fifo": ("file://{d}/fifo.png", "invalid_file_url"),
    "missing": ("file://{d}/nope.png", "image_not_found"),
    "long_name": ("file://{d}/" + "a" * 5000 + ".png", "image_unreadable"),
}


@BOTH_ENGINES
@pytest.mark.parametrize("case", sorted(BAD_FILE_URLS))
def test_bad_file_urls_are_400(client, media_dir, case):
    template, code = BAD_FILE_URLS[case]
    body = refused(client, template.format(d=media_dir))
    assert body["code"] == code, body["message"]
    good = client.chat.completions.create(model=MODEL, messages=message(f"file://{media_dir}/ok.png"), max_tokens=2)
    assert good.usage.model_extra["visual_tokens"] == 4


# -- defect 6: sizes checked before reading ---------------------------------------------------------------------
@BOTH_ENGINES
def test_huge_local_file_is_refused_from_its_size(client, media_dir):
    body = refused(client, f"file://{media_dir}/huge.png")
    assert body["code"] == "image_too_large"
    assert body["message"] == f"image file is {1 << 30} bytes, over the limit of {32 * 1024 * 1024}"
    good_request(client)


@BOTH_ENGINES
@pytest.mark.parametrize("path", ["/big", "/endless"])
def test_remote_image_over_the_cap_is_refused(client, media_host, path):
    body = refused(client, media_host + path)
    assert body["code"] == "image_too_large", body["message"]
    r = client.chat.completions.create(model=MODEL, messages=message(media_host + "/ok"), max_tokens=2)
    assert r.usage.model_extra["visual_tokens"] == 4


# -- defect 8: visual tokens known from the header ---------------------------------------------------------------
# An 8000x8000 header over a single row of pixel data: decoding it would fail ("truncated"), so a
# context_length_exceeded answer shows the refusal came from the header, before any decoding.
HEADER_ONLY_8000 = png(8000, 8000, pixels=False)


@BOTH_ENGINES
@pytest.mark.parametrize("mode", ["single", "agent"])
def test_visual_tokens_over_the_context_refused_before_decoding(client, mode):
    body = refused(client, data_url(HEADER_ONLY_8000),
                   extra={"zwz_mode": mode, "mm_processor_kwargs": {"max_pixels": 10**12}})
    assert body["code"] == "context_length_exceeded"
    assert "62500 visual tokens" in body["message"]  # (8000 / 32) ** 2
    good_request(client)


@BOTH_ENGINES
def test_pixel_count_over_the_server_limit_refused_before_decoding(client):
    body = refused(client, data_url(png(9000, 9000, pixels=False)))
    assert body["code"] == "image_too_large" and "81000000 pixels" in body["message"]
    good_request(client)


@TRANSFORMERS
def test_attention_endpoint_refuses_visual_tokens_from_the_header(server, client):
    r = attention(server, data_url(HEADER_ONLY_8000), mm_processor_kwargs={"max_pixels": 10**12})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    good_request(client)
