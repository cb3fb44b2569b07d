"""What ``zwz.server.serving.media`` makes of odd but valid images, and the byte caps it checks before reading
(the live-server side of the same rules: ``test_hostile_media.py``)."""

from __future__ import annotations

import base64
import doctest
import io

import pytest
from PIL import Image

from zwz.analytics.zoom import crop
from zwz.server.api.errors import APIError
from zwz.server.serving import media
from zwz.server.serving.media import MediaPolicy, decode_image
from zwz.server.serving.media_sources import read_data_url


def encoded(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def test_doctests():
    for module in (media, crop):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("image, pixel", [
    (Image.new("I;16", (4, 4), 60000), (234, 234, 234)),  # the top byte, not convert()'s clip to 255
    (Image.new("RGBA", (4, 4), (10, 20, 30, 0)), (255, 255, 255)),  # transparent -> white, as vLLM does
    (Image.new("RGBA", (4, 4), (10, 20, 30, 255)), (10, 20, 30)),
    (Image.new("LA", (4, 4), (100, 0)), (255, 255, 255)),
    (Image.new("P", (4, 4), 0), (0, 0, 0)),
])
def test_modes_become_rgb(image, pixel):
    out = decode_image(encoded(image), MediaPolicy())
    assert out.mode == "RGB" and out.size == (4, 4)
    assert out.getpixel((0, 0)) == pixel


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to view
    out = decode_image(encoded(Image.new("RGB", (30, 10)), "JPEG", exif=exif.tobytes()), MediaPolicy())
    assert out.size == (10, 30)


def test_admit_sees_the_header_size_before_decoding():
    seen = []
    decode_image(encoded(Image.new("RGB", (30, 10))), MediaPolicy(), admit=seen.append)
    assert seen == [(30, 10)]


def test_data_url_size_is_refused_before_decoding():
    payload = base64.b64encode(b"x" * 101).decode()  # 101 bytes -> 136 characters, "==" padded
    assert read_data_url("data:image/png;base64," + payload, max_bytes=101) == b"x" * 101
    with pytest.raises(APIError, match="image is 101 bytes, over the limit of 100"):
        read_data_url("data:image/png;base64," + payload, max_bytes=100)
    # Decoding would fail ("@" is not base64): the size alone refuses it, so nothing was decoded.
    with pytest.raises(APIError, match="image is 102 bytes, over the limit of 100"):
        read_data_url("data:image/png;base64," + "@" * 136, max_bytes=100)


def test_crops_stay_within_the_processors_aspect_ratio(tiny_models):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(tiny_models["qwen3_vl"], local_files_only=True)
    size = (7000, 40)  # 175:1, which the processor takes
    box = crop.crop_box([0, 0, 1000, 1], size)  # a 7000 x 1 strip: grown to 7000 x 32 would be 218:1
    assert box == (0, 0, 7000, 35)
    left, top, right, bottom = box
    assert processor.get_number_of_image_patches(bottom - top, right - left, {}) > 0  # no ValueError
    strip = crop.crop_image(Image.new("RGB", size), box, max_pixels=20_000)
    assert max(strip.size) <= crop.MAX_ASPECT_RATIO * min(strip.size)
