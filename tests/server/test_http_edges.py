"""HTTP edges on a live server: the README's curl form with a real-size photo, the 413 for clients that send
the whole body before reading, and /health answering while a huge body is being parsed."""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest

from zwz.server.api.app import create_app
from zwz.server.settings import ServerSettings

README = Path(__file__).resolve().parents[2] / "README.md"
LIMIT = 2 * 1024 * 1024


def good_chat(url: str) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "ok"


def too_large(limit: int) -> dict:
    return {"error": {"message": f"request body is over the limit of {limit} bytes", "type": "invalid_request_error",
                      "param": None, "code": "request_too_large"}}


def raw_request(url: str, head: str, body: bytes) -> socket.socket:
    """A connection that has sent ``head`` and the whole ``body`` before reading anything."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


@pytest.fixture(scope="module")
def limited(run_app, scripted_engine):
    with run_app(create_app(ServerSettings(max_body_bytes=LIMIT), scripted_engine("ok"))) as url:
        yield url


def test_readme_curl_form_sends_a_real_photo(run_app, scripted_engine, images, tmp_path):
    section = README.read_text().split("### curl", 1)[1]
    command = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    photo = tmp_path / "photo.jpg"
    images.noise(640, 480).save(photo, "JPEG", quality=95)
    assert photo.stat().st_size > 200_000
    assert len(base64.b64encode(photo.read_bytes())) > 128 * 1024  # over what one shell argument may hold
    engine = scripted_engine("ok")
    app = create_app(ServerSettings(served_model_name="zwz-nano"), engine)
    with run_app(app) as url:
        command = command.replace("localhost:8000", url.removeprefix("http://"))
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["choices"][0]["message"]["content"] == "ok"
        image = engine.requests[-1].messages[-1].content[0]
        assert image.size == (640, 480)
        assert engine.requests[-1].messages[-1].content[1] == "What is written on the small sign?"


def test_413_reaches_urllib_that_sends_the_whole_body_first(limited):
    request = urllib.request.Request(f"{limited}/v1/chat/completions", data=b"x" * (3 * LIMIT),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError, match="413") as caught:
        urllib.request.urlopen(request, timeout=60)
    assert json.loads(caught.value.read()) == too_large(LIMIT)
    good_chat(limited)


def test_413_reaches_a_chunked_upload_sent_whole(limited):
    chunk = b"x" * (256 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3 * LIMIT // len(chunk))) + b"0\r\n\r\n"
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n")
    with raw_request(limited, head, chunks) as sock:
        status, body = read_response(sock)
    assert (status, json.loads(body)) == (413, too_large(LIMIT))
    good_chat(limited)


@pytest.mark.parametrize("expect", ["100-continue", ""], ids=["expect", "no-expect"])
def test_413_reaches_curl_data_binary_from_a_file(limited, tmp_path, expect):
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * (3 * LIMIT))
    done = subprocess.run(["curl", "-s", "-o", str(tmp_path / "out.json"), "-w", "%{http_code}", "-H", f"Expect: {expect}",
                           "-H", "content-type: application/json", "--data-binary", f"@{big}",
                           f"{limited}/v1/chat/completions"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "413"), done.stderr
    assert json.loads((tmp_path / "out.json").read_text()) == too_large(LIMIT)
    good_chat(limited)


def unacked_bytes(sock: socket.socket) -> int:
    """Bytes this socket sent that the peer's kernel has not acknowledged yet (Linux SIOCOUTQ)."""
    import fcntl
    import termios

    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def test_health_answers_while_a_huge_body_is_parsed(run_app, scripted_engine):
    # 800k tiny messages, ~27 MB: seconds of JSON parsing and validation, which must not hold the event loop.
    messages = [{"role": "user", "content": "a"}] * 800_000
    body = json.dumps({"model": "scripted", "max_tokens": 4, "messages": messages}).encode()
    with run_app(create_app(ServerSettings(), scripted_engine("ok"))) as url:
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        with raw_request(url, head, body) as sock:
            deadline = time.monotonic() + 300  # only against a hang: the order below is what is tested
            while unacked_bytes(sock) and time.monotonic() < deadline:
                time.sleep(0.01)
            health = httpx.get(f"{url}/health", timeout=300)
            assert health.status_code == 200
            assert select.select([sock], [], [], 0)[0] == [], "the big request was answered before /health"
            status, answer = read_response(sock)
        error = json.loads(answer)["error"]  # the request-shape limit, checked in the worker process
        assert (status, error["param"]) == (400, "messages"), answer
        assert error["message"] == "messages: 800000 messages; this server allows at most 2048 (--max-messages)"
        good_chat(url)


def test_big_bodies_parsed_off_the_loop_validate_like_small_ones(run_app, scripted_engine, images):
    url_of_image = images.data_url(images.noise(1024, 768), "PNG")  # ~3 MB of base64: past the 1 MB threshold
    assert len(url_of_image) > 2 * 1024 * 1024
    content = [{"type": "image_url", "image_url": {"url": url_of_image}}, {"type": "text", "text": "what?"}]
    body = {"model": "scripted", "messages": [{"role": "user", "content": content}]}
    engine = scripted_engine("ok")
    with run_app(create_app(ServerSettings(), engine)) as url:
        bad = httpx.post(f"{url}/v1/chat/completions", json={**body, "temperature": 5}, timeout=120)
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "temperature"
        assert bad.json()["error"]["message"] == "temperature: Input should be less than or equal to 2"
        good = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert good.status_code == 200, good.text
        assert good.json()["choices"][0]["message"]["content"] == "ok"
        assert engine.requests[-1].messages[-1].content[0].size == (1024, 768)
