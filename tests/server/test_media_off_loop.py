"""Fetching a remote or local image never blocks the event loop: /health answers while a fetch hangs."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai

MODEL = "qwen3_vl"


def test_a_hanging_remote_image_does_not_stall_other_requests(serve, tiny_models, images):
    body = io.BytesIO()
    images.noise(64, 64, seed=4).save(body, format="PNG")
    entered, release = threading.Event(), threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            entered.set()
            release.wait(timeout=120)  # held until /health has answered
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body.getvalue())))
            self.end_headers()
            self.wfile.write(body.getvalue())

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with serve(tiny_models[MODEL], allow_remote_media=True, remote_media_timeout_s=120) as (url, _):
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=180)
            result: dict = {}

            def ask() -> None:
                result["reply"] = client.chat.completions.create(
                    model=MODEL, max_tokens=4, temperature=0,
                    messages=[{"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": f"http://127.0.0.1:{site.server_address[1]}/a.png"}},
                        {"type": "text", "text": "What is it?"}]}])  # fmt: skip

            asker = threading.Thread(target=ask)
            asker.start()
            assert entered.wait(timeout=120), "the server never fetched the image"
            health = httpx.get(url + "/health", timeout=60)  # on a blocked loop this waits for the fetch
            still_held = not release.is_set()
            release.set()
            asker.join(timeout=180)
            assert health.status_code == 200 and still_held
            assert result["reply"].usage.model_extra["visual_tokens"] == 4  # 64 px: 2 x 2 merged patches
            assert result["reply"].choices[0].finish_reason in ("stop", "length")
    finally:
        release.set()
        site.shutdown()
        site.server_close()
