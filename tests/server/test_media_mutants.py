"""Media loading called directly, pinned down where mutation testing (tools/mutation.sh media) found it
reachable only through a live server: which URL goes where, every refusal's message and code, the size and
shape limits at their boundaries, and the byte caps of data, file and remote sources.

The remote host is a live loopback server (``run_app``) standing in for a third-party image host.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from zwz.server.api.errors import APIError
from zwz.server.serving.media import MediaPolicy, check_shape, decode_image, load_image
from zwz.server.serving.media_sources import read_data_url, read_file_url, read_remote


def png(size: tuple[int, int] = (6, 4), colour: tuple[int, int, int] = (10, 200, 30), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def check(excinfo, code: str) -> None:
    """The refusal is the 400 an image gets, pointing at the messages, with this ``code``."""
    assert (excinfo.value.status_code, excinfo.value.param, excinfo.value.code) == (400, "messages", code)


# -- load_image: one route per URL kind ----------------------------------------------------------------------
def test_data_url_decodes_to_rgb():
    image = load_image(data_url(png()), MediaPolicy())
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (6, 4), (10, 200, 30))


def test_admit_sees_the_size_through_load_image():
    seen: list[tuple[int, int]] = []
    load_image(data_url(png((7, 3))), MediaPolicy(), seen.append)
    assert seen == [(7, 3)]


def test_file_url_below_the_allowed_folder(tmp_path: Path):
    (tmp_path / "a b.png").write_bytes(png((5, 5)))
    policy = MediaPolicy(allowed_local_dir=str(tmp_path))
    assert load_image(f"file://{tmp_path}/a%20b.png", policy).size == (5, 5)  # percent-decoding undone
    assert load_image(f"file://localhost{tmp_path}/a%20b.png", policy).size == (5, 5)
    with pytest.raises(APIError, match="^file:// image URLs are disabled on this server$") as e:
        load_image(f"file://{tmp_path}/a%20b.png", MediaPolicy())
    check(e, "local_media_disabled")


def test_remote_is_off_unless_allowed():
    with pytest.raises(APIError, match=r"^http\(s\) image URLs are disabled on this server; send the image as a "
                       r"base64 data URL$") as e:
        load_image("https://example.com/a.png", MediaPolicy())
    check(e, "remote_media_disabled")
    with pytest.raises(APIError, match="^http") as e:
        load_image("http://example.com/a.png", MediaPolicy())
    check(e, "remote_media_disabled")
    assert load_image(data_url(png()), MediaPolicy()).size == (6, 4)


@pytest.mark.parametrize("url", ["ftp://host/a.png", "/tmp/a.png", "DATA:image/png;base64,AAAA"])
def test_other_urls_are_refused(url):
    with pytest.raises(APIError, match=r"^image_url must be a data: URL \(base64\), or file:// / http\(s\):// "
                       r"where the server allows it$") as e:
        load_image(url, MediaPolicy())
    check(e, "unsupported_url")
    assert load_image(data_url(png()), MediaPolicy()).size == (6, 4)


@pytest.fixture(scope="module")
def image_host(run_app):
    """A loopback image host: /ok.png, /big.png (over a 100-byte cap, declared), /stream (chunked), /gone."""
    from fastapi import FastAPI
    from fastapi.responses import Response, StreamingResponse

    app = FastAPI()
    body = png()

    @app.get("/ok.png")
    def ok() -> Response:
        return Response(body, media_type="image/png")

    @app.get("/big.png")
    def big() -> Response:
        return Response(b"\0" * 150, media_type="image/png")

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"\0" * 60, b"\0" * 60]), media_type="image/png")

    with run_app(app) as url:
        yield url


def test_remote_fetch_and_its_caps(image_host):
    assert load_image(f"{image_host}/ok.png", MediaPolicy(allow_remote=True)).size == (6, 4)
    assert read_remote(f"{image_host}/stream", 120, 10.0) == b"\0" * 120  # exactly at the cap
    with pytest.raises(APIError, match="^image is 150 bytes, over the limit of 100$") as e:
        read_remote(f"{image_host}/big.png", 100, 10.0)
    check(e, "image_too_large")
    with pytest.raises(APIError, match="^remote image is over the limit of 119 bytes$") as e:
        read_remote(f"{image_host}/stream", 119, 10.0)
    check(e, "image_too_large")
    with pytest.raises(APIError, match=r"^could not fetch image: Client error '404 Not Found'") as e:
        read_remote(f"{image_host}/gone", 100, 10.0)
    check(e, "image_fetch_failed")
    assert read_remote(f"{image_host}/ok.png", 1000, 10.0) == png()


# -- check_shape ---------------------------------------------------------------------------------------------
def test_shape_limits_are_inclusive():
    assert check_shape((1, 1), 1) is None
    assert check_shape((100, 10), 1000) is None  # pixels exactly at the limit
    assert check_shape((200, 1), 1000) is None  # 200:1, the processor's limit
    assert check_shape((1, 200), 1000) is None


@pytest.mark.parametrize(("size", "limit", "code", "message"), [
    ((0, 5), 100, "invalid_image", "image is 0x5: it has no pixels"),
    ((5, 0), 100, "invalid_image", "image is 5x0: it has no pixels"),
    ((101, 10), 1000, "image_too_large", "image is 101x10 = 1010 pixels, over the limit of 1000"),
    ((201, 1), 1000, "image_aspect_ratio",
     "image is 201x1, an aspect ratio of 201:1; this model's processor takes at most 200:1"),
    ((2, 401), 1000, "image_aspect_ratio",
     "image is 2x401, an aspect ratio of 200.5:1; this model's processor takes at most 200:1"),
])
def test_shapes_refused(size, limit, code, message):
    with pytest.raises(APIError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$") as e:
        check_shape(size, limit)
    check(e, code)
    assert check_shape((10, 10), limit) is None


# -- decode_image --------------------------------------------------------------------------------------------
def test_formats_outside_the_list_are_refused():
    with pytest.raises(APIError, match=r"^image format TIFF is not supported \(use BMP, GIF, JPEG, PNG, WEBP\)$") as e:
        decode_image(png(fmt="TIFF"), MediaPolicy())
    check(e, "unsupported_format")
    for fmt in ("JPEG", "WEBP", "GIF", "BMP"):
        assert decode_image(png(fmt=fmt), MediaPolicy()).size == (6, 4)


def test_pixel_limit_comes_from_the_policy():
    with pytest.raises(APIError, match="^image is 6x4 = 24 pixels, over the limit of 23$") as e:
        decode_image(png(), MediaPolicy(max_image_pixels=23))
    check(e, "image_too_large")
    assert decode_image(png(), MediaPolicy(max_image_pixels=24)).size == (6, 4)


def test_not_an_image_and_truncated_pixels():
    with pytest.raises(APIError, match=r"^the data is not an image this server can read \(header: cannot identify "
                       r"image file") as e:
        decode_image(b"hello, not an image", MediaPolicy())
    check(e, "invalid_image")
    big = png((64, 64))
    with pytest.raises(APIError, match=r"^the data is not an image this server can read \(pixel data: ") as e:
        decode_image(big[: len(big) - 40], MediaPolicy())
    check(e, "invalid_image")
    assert decode_image(big, MediaPolicy()).size == (64, 64)


def test_admit_can_refuse_before_decoding():
    def admit(size: tuple[int, int]) -> None:
        raise APIError(400, f"{size[0]}x{size[1]} is too many tokens", code="context_length_exceeded")

    with pytest.raises(APIError, match="^6x4 is too many tokens$"):
        decode_image(png(), MediaPolicy(), admit)
    assert decode_image(png(), MediaPolicy(), None).size == (6, 4)


# -- data URLs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "code", "message"), [
    ("data:image/png;base64", "invalid_data_url", "data URL must look like data:image/png;base64,<data>"),
    ("data:image/png,AAAA", "invalid_data_url", "data URL must look like data:image/png;base64,<data>"),
    ("data:text/plain;base64,AAAA", "unsupported_format", "data URL media type 'text/plain' is not an image"),
    ("data:image/png;base64,AA!A", "invalid_base64", "image data is not valid base64"),
])
def test_bad_data_urls(url, code, message):
    with pytest.raises(APIError, match=f"^{message}$") as e:
        read_data_url(url, 1000)
    check(e, code)
    assert read_data_url("data:;base64,AAAA", 1000) == b"\0\0\0"  # no media type: taken as an image


def test_data_url_size_counts_the_padding():
    assert read_data_url("data:image/png;base64," + base64.b64encode(b"x" * 100).decode(), 100) == b"x" * 100
    assert read_data_url("data:image/png;base64," + base64.b64encode(b"x" * 99).decode(), 99) == b"x" * 99
    with pytest.raises(APIError, match="^image is 99 bytes, over the limit of 98$"):
        read_data_url("data:image/png;base64," + base64.b64encode(b"x" * 99).decode(), 98)


# -- file URLs -----------------------------------------------------------------------------------------------
@pytest.fixture()
def media_dir(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "ok.png").write_bytes(png())
    (root / "sub").mkdir()
    (tmp_path / "outside.png").write_bytes(png())
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    return root


@pytest.mark.parametrize(("url", "code", "message"), [
    ("file://evil{root}/ok.png", "invalid_file_url",
     "file:// URL must name a path on this server \\(file:///path\\), not host 'evil'"),
    ("file:ok.png", "invalid_file_url",
     "file:// URL path must be absolute and free of control characters \\(NUL included\\)"),
    ("file://{root}/ok%00.png", "invalid_file_url",
     "file:// URL path must be absolute and free of control characters \\(NUL included\\)"),
    ("file://{root}/ok%7F.png", "invalid_file_url",
     "file:// URL path must be absolute and free of control characters \\(NUL included\\)"),
    ("file://{root}/../outside.png", "local_media_forbidden",
     "file:// image URL is outside the folder this server allows"),
    ("file://{root}/link.png", "local_media_forbidden", "file:// image URL is outside the folder this server allows"),
    ("file://{root}/missing.png", "image_not_found", "no such image file: missing.png"),
    ("file://{root}/sub", "invalid_file_url", "sub is not a regular file"),
])
def test_bad_file_urls(media_dir, url, code, message):
    with pytest.raises(APIError, match=f"^{message}$") as e:
        read_file_url(url.format(root=media_dir), str(media_dir), 10_000)
    check(e, code)
    assert read_file_url(f"file://{media_dir}/ok.png", str(media_dir), 10_000) == png()


def test_file_size_cap(media_dir):
    size = len(png())
    assert read_file_url(f"file://{media_dir}/ok.png", str(media_dir), size) == png()  # exactly at the cap
    with pytest.raises(APIError, match=f"^image file is {size} bytes, over the limit of {size - 1}$") as e:
        read_file_url(f"file://{media_dir}/ok.png", str(media_dir), size - 1)
    check(e, "image_too_large")


def test_unreadable_file(media_dir):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    (media_dir / "locked.png").write_bytes(png())
    (media_dir / "locked.png").chmod(0)
    with pytest.raises(APIError, match="^cannot open image file locked.png: Permission denied$") as e:
        read_file_url(f"file://{media_dir}/locked.png", str(media_dir), 10_000)
    check(e, "image_unreadable")
    assert read_file_url(f"file://{media_dir}/ok.png", str(media_dir), 10_000) == png()
