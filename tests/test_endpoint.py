"""``zwz.endpoint``: the URL forms, the error envelope and image data URLs every client shares."""

from __future__ import annotations

import doctest

import httpx
from PIL import Image

import zwz.endpoint
from zwz.endpoint import api_base, error_message, image_data_url, server_root


def test_doctests():
    result = doctest.testmod(zwz.endpoint)
    assert result.attempted > 0 and result.failed == 0


def test_server_root_accepts_the_usual_spellings():
    assert server_root("http://h:8000/v1/chat/completions") == "http://h:8000"
    assert server_root(" localhost:8000/ ") == "http://localhost:8000"
    assert api_base("localhost:8000/v1/") == "http://localhost:8000/v1"


def test_error_message_reads_a_response_and_its_status():
    resp = httpx.Response(404, json={"error": {"message": "no such\n model", "code": "model_not_found"}})
    assert error_message(resp, status=resp.status_code) == "HTTP 404: no such model"
    assert error_message(httpx.Response(502, text="Bad Gateway")) == "Bad Gateway"


def test_encoded_files_are_sent_as_they_are(tmp_path):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path, "JPEG")
    assert image_data_url(path).startswith("data:image/jpeg;base64,")
    image = Image.new("RGB", (8, 8))
    assert image_data_url(image, path.read_bytes()).startswith("data:image/jpeg;base64,")
    tiff = tmp_path / "x.tiff"
    image.save(tiff, "TIFF")
    assert image_data_url(tiff).startswith("data:image/png;base64,")  # re-encoded: not every server reads TIFF
