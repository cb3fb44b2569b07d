"""The UI in a real headless Chromium against a live zwz server with the tiny random Qwen3-VL.

Screenshots land in the test's tmp dir (and ``$ZWZ_UI_ARTIFACTS`` when set). ``ZWZ_UI_DOCS_SCREENSHOT=1`` also refreshes
``docs/ui.png`` from the ZoomWorld run.
"""

from __future__ import annotations

import os
import re

from zwz.ui.examples import ExampleCatalog
from zwz.ui.views import RunSettings

# Small answers and images keep each run to a few seconds on two CPU cores.
FAST = RunSettings(max_tokens=8, agent_max_turns=3)
ANSWER_PANELS = ("#zwz-single", "#zwz-regional", "#zwz-agent", "#zwz-attention-zoom")
RUN_TIMEOUT_MS = 90_000


def _expect():
    from playwright.sync_api import expect

    return expect


def _open(page, url: str) -> None:
    page.goto(url)
    _expect()(page.locator("#zwz-server")).not_to_contain_text("checking", timeout=30_000)


def _field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def _run_and_wait(page) -> str:
    page.locator("#zwz-run").click()
    _expect()(page.locator("#zwz-status")).to_contain_text("Done in", timeout=RUN_TIMEOUT_MS)
    return page.locator("#zwz-status").inner_text()


def _rendered_box(img) -> dict[str, float]:
    """Where the picture itself is drawn inside its ``<img>`` (Gradio uses ``object-fit: scale-down``)."""
    return img.evaluate("""el => {
        const r = el.getBoundingClientRect();
        const s = Math.min(r.width / el.naturalWidth, r.height / el.naturalHeight, 1);
        const w = el.naturalWidth * s, h = el.naturalHeight * s;
        return {x: r.x + (r.width - w) / 2, y: r.y + (r.height - h) / 2, width: w, height: h};
    }""")


def _has_image(page, selector: str) -> bool:
    return page.locator(f"{selector} img").count() > 0


def test_upload_ask_and_run_fills_every_panel(zwz_server, ui_app, page, screenshot, images, tmp_path):
    photo = images.noise(448, 336, seed=3)
    path = tmp_path / "photo.png"
    photo.save(path)
    with ui_app(zwz_server, catalog=ExampleCatalog(0), defaults=FAST) as url:
        _open(page, url)
        assert "qwen3_vl" in page.locator("#zwz-server").inner_text()
        page.locator("#zwz-image input[type=file]").set_input_files(str(path))
        shown = page.locator("#zwz-image img").first
        _expect()(shown).to_be_visible()
        # The evidence box, drawn by two clicks on opposite corners.
        bb = _rendered_box(shown)
        page.mouse.click(bb["x"] + 0.25 * bb["width"], bb["y"] + 0.25 * bb["height"])
        _expect()(page.locator("#zwz-status")).to_contain_text("First corner")
        page.mouse.click(bb["x"] + 0.75 * bb["width"], bb["y"] + 0.75 * bb["height"])
        _expect()(page.locator("#zwz-status")).to_contain_text("Evidence box set")
        x1, y1, x2, y2 = (int(v) for v in _field(page, "zwz-box").input_value().split(","))
        assert abs(x1 - 112) <= 4 and abs(y1 - 84) <= 4 and abs(x2 - 336) <= 4 and abs(y2 - 252) <= 4
        _field(page, "zwz-question").fill("What colour is the square in the box?")
        status = _run_and_wait(page)
        screenshot(page, "upload-run")

        assert "5 of 5 views answered" in status, status
        for panel in ANSWER_PANELS:
            text = page.locator(panel).inner_text()
            assert "Answer:" in text and re.search(r"latency [\d.]+ m?s", text), (panel, text)
            assert "model call" in text, (panel, text)
        heat = page.locator("#zwz-heatmap-info").inner_text()
        assert re.search(r"Coverage: [\d.]+% of the attention mass", heat), heat
        assert _has_image(page, "#zwz-heatmap")
        assert page.locator("#zwz-agent-crops img").count() >= 1  # the random-weight demo's fixed zoom turn
        assert "1 crop taken" in page.locator("#zwz-agent").inner_text()
        assert page.outside_requests == []


def test_zoomworld_example_end_to_end(zwz_server, ui_app, page, screenshot):
    # The Settings' pixel budget keeps the 1536x1152 ZoomWorld image to ~330 visual tokens.
    fast = RunSettings(max_tokens=8, agent_max_turns=3, max_pixels=512 * 512)
    with ui_app(zwz_server, catalog=ExampleCatalog(6), defaults=fast) as url:
        _open(page, url)
        page.locator("#zwz-example input").click()
        page.locator("[data-testid=dropdown-option]", has_text="zw0-00002").click()
        _expect()(_field(page, "zwz-question")).to_have_value(re.compile("panel labelled"))
        assert re.fullmatch(r"\d+,\d+,\d+,\d+", _field(page, "zwz-box").input_value())
        assert re.fullmatch(r"[A-D]", _field(page, "zwz-reference").input_value())  # a multiple-choice item
        _expect()(page.locator("#zwz-status")).to_contain_text("Loaded zw0-00002")
        status = _run_and_wait(page)
        screenshot(page, "zoomworld-run")

        assert "5 of 5 views answered" in status, status
        for panel in ANSWER_PANELS:
            text = page.locator(panel).inner_text()
            assert re.search(r"✓ correct|✗ incorrect|\? unjudged", text), (panel, text)
        assert "saw the example's crop" in page.locator("#zwz-regional").inner_text()
        assert "Coverage:" in page.locator("#zwz-heatmap-info").inner_text()
        assert page.outside_requests == []
        if os.environ.get("ZWZ_UI_DOCS_SCREENSHOT"):
            _save_docs_screenshot(page)


def test_stopped_server_shows_the_message_in_every_view(serve, tiny_models, ui_app, page, screenshot, images,
                                                        tmp_path):
    path = tmp_path / "photo.png"
    images.noise(200, 150).save(path)
    server = serve(tiny_models["qwen3_vl"])
    server_url, _ = server.__enter__()
    try:
        with ui_app(server_url, catalog=ExampleCatalog(0), defaults=FAST) as url:
            _open(page, url)
            assert "qwen3_vl" in page.locator("#zwz-server").inner_text()
            server.__exit__(None, None, None)  # the server stops while the UI runs
            server = None
            page.reload()
            _open(page, url)
            assert "cannot reach the zwz server" in page.locator("#zwz-server").inner_text()
            page.locator("#zwz-image input[type=file]").set_input_files(str(path))
            _field(page, "zwz-question").fill("What is it?")
            _field(page, "zwz-box").fill("10,10,100,100")
            status = _run_and_wait(page)
            screenshot(page, "server-stopped")
            assert "5 failed: cannot reach the zwz server" in status, status
            for panel in (*ANSWER_PANELS, "#zwz-heatmap-info"):
                assert "Failed: cannot reach the zwz server" in page.locator(panel).inner_text(), panel
    finally:
        if server is not None:
            server.__exit__(None, None, None)


def test_bad_image_and_bad_box_are_explained(dead_url, ui_app, page, screenshot, images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    good = tmp_path / "photo.png"
    images.noise(120, 90).save(good)
    with ui_app(dead_url, catalog=ExampleCatalog(0), defaults=FAST) as url:
        _open(page, url)
        page.locator("#zwz-image input[type=file]").set_input_files(str(bad))
        _field(page, "zwz-question").fill("What is it?")
        page.locator("#zwz-run").click()
        _expect()(page.locator("#zwz-status")).to_contain_text("The image could not be read", timeout=RUN_TIMEOUT_MS)
        screenshot(page, "bad-image")

        page.locator("#zwz-image button[aria-label='Remove Image']").click()
        page.locator("#zwz-image input[type=file]").set_input_files(str(good))
        _expect()(page.locator("#zwz-image img").first).to_be_visible()
        _field(page, "zwz-box").fill("10,10,500,60")
        page.locator("#zwz-run").click()
        _expect()(page.locator("#zwz-status")).to_contain_text("is not inside the 120x90 image")


def _save_docs_screenshot(page) -> None:
    """``docs/ui.png``: the page after a ZoomWorld run, in a 256-colour palette to stay small."""
    import io
    from pathlib import Path

    from PIL import Image

    out = Path(__file__).resolve().parents[2] / "docs" / "ui.png"
    out.parent.mkdir(exist_ok=True)
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    shot.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)
    assert out.stat().st_size < 500_000, out.stat().st_size

