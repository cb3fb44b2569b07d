"""The Gradio dual-view app: one question answered from the whole image, from the zoomed region, by the tool-use
agent and by attention-guided zoom, with where the model looked. A client of the zwz HTTP API only.

    demo = build_app("http://127.0.0.1:8000", catalog=ExampleCatalog(12))
    launch(demo, host="127.0.0.1", port=7860)           # blocks; block=False returns the URL instead

Named API endpoints (``gradio_client.Client(url).predict(..., api_name=...)``): ``/compare`` (the run; its
last output is a JSON summary of every view), ``/load_example``, ``/list_examples``, ``/server_status``.
"""

# No ``from __future__ import annotations`` here: Gradio reads the handlers' annotations (``gr.SelectData``) at
# run time to inject event data.

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image

from zwz.defaults import AGENT_MAX_TURNS, REQUEST_TIMEOUT_S, ZOOMWORLD_SEED
from zwz.ui.client import ServerError, ZwzClient
from zwz.ui.examples import ExampleCatalog
from zwz.ui.form import InputError, build_query, read_settings, upload_path
from zwz.ui.render import answer_markdown, heading, heatmap_markdown, status_markdown, summary_json
from zwz.ui.views import ANSWER_VIEWS, Query, RunSettings, ViewResult, draw_boxes, format_box, parse_box, run_views

__all__ = ["build_app", "launch"]

EVIDENCE_COLOUR = (40, 200, 40)
TICK_S = 1.0  # the status line's refresh period while views run
CSS = """
.zwz-panel .prose code { white-space: pre-wrap; word-break: break-word; }
.zwz-status { min-height: 1.5em; }
"""


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version checks from this app
    try:
        import gradio as gr
    except ImportError as exc:
        raise ImportError("the UI needs gradio: pip install 'zwz[ui]'") from exc
    return gr


# -- the app ---------------------------------------------------------------------------------------------------
def build_app(server_url: str, *, api_key: str | None = None, model: str | None = None,
              catalog: ExampleCatalog | None = None, seed: int = ZOOMWORLD_SEED, timeout: float = REQUEST_TIMEOUT_S,
              defaults: RunSettings | None = None):
    """The Gradio Blocks app talking to the zwz server at ``server_url``; ``defaults`` fill the settings form."""
    gr = _gradio()
    catalog = catalog if catalog is not None else ExampleCatalog()
    d = defaults or RunSettings()

    def client() -> ZwzClient:
        return ZwzClient(server_url, api_key, model=model, timeout=timeout)

    with gr.Blocks(title="ZwZ: zooming without zooming", analytics_enabled=False) as demo:
        gr.Markdown("## ZwZ: zooming without zooming\nThe same question answered from the whole image, from the "
                    "zoomed-in region, by a tool-use zoom agent and by attention-guided zoom, with where the model "
                    "looks.")
        server_md = gr.Markdown(f"Server `{server_url}`: checking…", elem_id="zwz-server")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                with gr.Row():
                    example = gr.Dropdown(catalog.choices(seed), value=None, label="Example", scale=4,
                                          elem_id="zwz-example", info="or upload your own image below")
                    seed_box = gr.Number(seed, precision=0, label="ZoomWorld seed", scale=1, minimum=0,
                                         visible=catalog.zoomworld_count > 0)
                image = gr.Image(type="filepath", format="png", sources=["upload", "clipboard"], height=420,
                                 label="Image: click two opposite corners to set the evidence box", elem_id="zwz-image")
                question = gr.Textbox(label="Question", lines=3, elem_id="zwz-question",
                                      placeholder="What is written on the small sign?")
                with gr.Row():
                    box = gr.Textbox(label="Evidence box x1,y1,x2,y2 (pixels, optional)", elem_id="zwz-box",
                                     placeholder="drawn by two clicks on the image, or typed")
                    reference = gr.Textbox(label="Reference answer (optional)", elem_id="zwz-reference",
                                           placeholder="scores each view when given")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        max_tokens = gr.Slider(1, 1024, value=d.max_tokens, step=1, label="Max answer tokens")
                        max_pixels = gr.Number(d.max_pixels or 0, precision=0, minimum=0,
                                               label="Image pixel budget (0: the server's)")
                    with gr.Row():
                        agent_turns = gr.Slider(1, max(AGENT_MAX_TURNS, d.agent_max_turns), value=d.agent_max_turns,
                                                step=1, label="Agent: max model calls")
                        fixed_turns = gr.Slider(0, 5, value=d.agent_fixed_turns, step=1,
                                                label="Agent: fixed zoom turns",
                                                info="zoom this many times even if the model does not ask "
                                                     "(for random-weight demos)")
                        layer = gr.Number(d.layer, precision=0, label="Attention layer (blank: default)")
                run = gr.Button("Compare views", variant="primary", elem_id="zwz-run")
                status = gr.Markdown("", elem_id="zwz-status", elem_classes="zwz-status")
            with gr.Column(scale=5):
                gr.Markdown(heading("heatmap"))
                heatmap_img = gr.Image(type="pil", format="png", label="relative attention (evidence box green, "
                                       "suggested zoom dashed)", interactive=False, height=420, elem_id="zwz-heatmap")
                heatmap_md = gr.Markdown(heatmap_markdown(None, None), elem_id="zwz-heatmap-info",
                                         elem_classes="zwz-panel")
        def view_image(label: str):
            return gr.Image(type="pil", format="png", label=label, interactive=False, height=260)

        with gr.Row(equal_height=False):
            with gr.Column(elem_classes="zwz-panel", min_width=220):
                gr.Markdown(heading("single"))
                single_img = view_image("whole image (evidence box green)")
                single_md = gr.Markdown(answer_markdown(None), elem_id="zwz-single")
            with gr.Column(elem_classes="zwz-panel", min_width=220):
                gr.Markdown(heading("regional"))
                regional_img = view_image("the crop it saw")
                regional_md = gr.Markdown(answer_markdown(None), elem_id="zwz-regional")
            with gr.Column(elem_classes="zwz-panel", min_width=220):
                gr.Markdown(heading("agent"))
                agent_gallery = gr.Gallery(label="crops it took", columns=2, height=260, object_fit="contain",
                                           elem_id="zwz-agent-crops")
                agent_md = gr.Markdown(answer_markdown(None), elem_id="zwz-agent")
            with gr.Column(elem_classes="zwz-panel", min_width=220):
                gr.Markdown(heading("attention_zoom"))
                zoom_img = view_image("the zoom it chose")
                zoom_md = gr.Markdown(answer_markdown(None), elem_id="zwz-attention-zoom")
        with gr.Accordion("Raw results (JSON)", open=False):
            raw = gr.JSON(label="views", elem_id="zwz-raw")
        corner = gr.State(None)

        # -- handlers ---------------------------------------------------------------------------------------
        async def server_status(fixed: float | None = None):
            """The server line; with random weights, one fixed zoom turn so the agent view shows a crop."""
            try:
                async with client() as c:
                    health = await c.health()
                    name = await c.model_name()
            except ServerError as exc:
                return f"⚠ **Server problem:** {exc}", gr.skip()
            line = f"Server `{c.root}` · model `{name}` · {health.get('engine', '?')} engine"
            if not health.get("random_weights"):
                return line, gr.skip()
            line += " · ⚠ **random weights**: answers are gibberish"
            if fixed:
                return line, gr.skip()
            return line + " (the agent gets one fixed zoom turn, so it shows a crop)", 1

        def list_examples(seed_value: float | None):
            return gr.Dropdown(choices=catalog.choices(int(seed_value or 0)), value=None)

        def load_example(key: str | None):
            """An example's image, question, evidence box and reference answer."""
            if not key:
                return (gr.skip(),) * 7
            try:
                item = catalog.get(key)
            except KeyError as exc:
                raise gr.Error(str(exc.args[0])) from None
            image_value = item.load_image().convert("RGB")
            preview = draw_boxes(image_value, [(item.bbox, EVIDENCE_COLOUR)] if item.bbox else [])
            note = f"Loaded {item.id}; expected answer: {item.answer_text!r}. Press **Compare views**."
            return image_value, item.prompt, format_box(item.bbox), item.answer, note, preview, None

        def forget_example(example_key: str | None):
            """A new image is no longer the example: drop the example and the box that came with it."""
            return None, ("" if example_key else gr.skip()), None  # dropdown, box, corner

        def pick_corner(first: list[int] | None, evt: gr.SelectData):
            """Two clicks on the image set the evidence box (any two opposite corners)."""
            x, y = (int(v) for v in evt.index)
            if first is None:
                return gr.skip(), [x, y], f"First corner at ({x}, {y}); click the opposite corner."
            x0, y0 = first
            box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                return gr.skip(), None, "That box is empty; click two opposite corners."
            return format_box(box), None, f"Evidence box set to [{format_box(box)}]."

        def preview(image_payload: Any, example_key: str | None, box_text: str):
            """The whole image with the evidence box, in the single-pass panel, as the box is drawn or typed."""
            path = upload_path(image_payload)
            try:
                img = catalog.get(example_key).load_image() if example_key else (Image.open(path) if path else None)
            except (KeyError, OSError, ValueError):
                return gr.skip()
            if img is None:
                return None
            try:
                box_value = parse_box(box_text, img.size)
            except ValueError:
                return gr.skip()
            return draw_boxes(img, [(box_value, EVIDENCE_COLOUR)] if box_value else [])

        outputs = [status, heatmap_img, heatmap_md, single_img, single_md, regional_img, regional_md, agent_gallery,
                   agent_md, zoom_img, zoom_md, raw]

        def render(query: Query | None, results: dict[str, ViewResult], running: bool, only: str | None = None
                   ) -> dict[Any, Any]:
            def pick(r: ViewResult | None) -> Image.Image | None:
                return r.images[0][0] if r and r.images else None

            heat, single, reg, agent, zoom = (results.get(v) for v in ("heatmap", *ANSWER_VIEWS))
            panels = {
                "heatmap": {heatmap_img: pick(heat), heatmap_md: heatmap_markdown(heat, query, running)},
                "single": {single_md: answer_markdown(single, running)},
                "regional": {regional_img: pick(reg), regional_md: answer_markdown(reg, running)},
                "agent": {agent_gallery: [(im, cap) for im, cap in agent.images] if agent else [],
                          agent_md: answer_markdown(agent, running)},
                "attention_zoom": {zoom_img: pick(zoom), zoom_md: answer_markdown(zoom, running)},
            }
            out: dict[Any, Any] = {}
            for view, values in panels.items():
                if only is None or view == only:
                    out.update(values)
            return out

        async def compare(image_payload, example_key, question_text, box_text, reference_text, max_tokens_value,
                          agent_turns_value, fixed_turns_value, layer_value, max_pixels_value
                          ) -> AsyncIterator[dict[Any, Any]]:
            """Answer the question in every view concurrently; panels fill as their views finish."""
            started = time.perf_counter()
            try:
                settings = read_settings(max_tokens_value, agent_turns_value, fixed_turns_value, layer_value,
                                         max_pixels_value)
                query = await asyncio.to_thread(build_query, catalog, upload_path(image_payload), example_key,
                                                question_text, box_text, reference_text, settings)
            except (InputError, ValueError) as exc:
                yield {status: f"⚠ {exc}", **render(None, {}, False), single_img: gr.skip(), raw: {"error": str(exc)}}
                return
            results: dict[str, ViewResult] = {}
            full = await asyncio.to_thread(draw_boxes, query.image, [(query.box, EVIDENCE_COLOUR)] if query.box else [])
            yield {status: status_markdown(results, started, False), **render(query, results, True),
                   single_img: full, raw: None}
            async with client() as c:
                views = run_views(c, query)
                pending = asyncio.ensure_future(anext(views))
                try:
                    while True:
                        done, _ = await asyncio.wait({pending}, timeout=TICK_S)
                        if not done:  # nothing finished yet: keep the elapsed time moving
                            yield {status: status_markdown(results, started, False)}
                            continue
                        try:
                            result = pending.result()
                        except StopAsyncIteration:
                            break
                        results[result.view] = result
                        yield {status: status_markdown(results, started, False),
                               **render(query, results, True, result.view)}
                        pending = asyncio.ensure_future(anext(views))
                finally:  # also when the page goes away mid-run: stop the views' requests
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
                    await views.aclose()
            yield {status: status_markdown(results, started, True), **render(query, results, False), single_img: full,
                   raw: summary_json(query, results)}

        # -- wiring -----------------------------------------------------------------------------------------
        demo.load(server_status, [fixed_turns], [server_md, fixed_turns], api_name="server_status")
        seed_box.change(list_examples, seed_box, example, api_name="list_examples")
        example.input(load_example, example, [image, question, box, reference, status, single_img, corner],
                      api_name="load_example")
        for event in (image.upload, image.clear):
            event(forget_example, example, [example, box, corner], api_visibility="private").then(
                preview, [image, example, box], single_img, api_visibility="private", show_progress="hidden",
                preprocess=False)
        image.select(pick_corner, corner, [box, corner, status], api_visibility="private")
        box.change(preview, [image, example, box], single_img, api_visibility="private", show_progress="hidden",
                   preprocess=False)
        form = [image, example, question, box, reference, max_tokens, agent_turns, fixed_turns, layer, max_pixels]
        run.click(compare, form, outputs, api_name="compare", show_progress="minimal", preprocess=False)
        question.submit(compare, form, outputs, api_visibility="private", show_progress="minimal", preprocess=False)
    demo.queue(default_concurrency_limit=4)
    return demo


def launch(demo, *, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
    """Serve ``demo`` (no share link, no telemetry); returns its local URL when ``block`` is False."""
    gr = _gradio()
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                            show_error=True, quiet=not block, ssr_mode=False, theme=gr.themes.Default(), css=CSS,
                            footer_links=["api"])
    return url
