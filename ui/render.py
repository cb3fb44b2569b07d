"""What the UI shows for each view: panel texts, the status line and the JSON summary (no Gradio here)."""

from __future__ import annotations

import time
from typing import Any

from zwz.ui.views import VIEWS, Query, ViewResult, format_box

__all__ = ["TITLES", "answer_markdown", "heading", "heatmap_markdown", "status_markdown", "summary_json"]

TITLES = {
    "heatmap": ("Where the model looks", "relative attention: the answer's attention over the image, divided by a "
                                         "generic description's"),
    "single": ("Single pass", "the whole image, one pass (the global view)"),
    "regional": ("Regional view", "the zoomed-in crop, one pass"),
    "agent": ("Tool-use agent", "zooms by calling a crop tool"),
    "attention_zoom": ("Attention zoom", "crops where the attention map points, then answers"),
}
VERDICTS = {"correct": "✓ correct", "incorrect": "✗ incorrect", "unjudged": "? unjudged (the rules cannot decide)"}

def _truncate(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + " …"


def _cost(r: ViewResult) -> str:
    parts = []
    if r.latency_ms is not None:
        parts.append(f"{r.latency_ms / 1e3:.2f} s" if r.latency_ms >= 1000 else f"{r.latency_ms:.0f} ms")
    if r.model_calls is not None:
        parts.append(f"{r.model_calls} model call{'s' if r.model_calls != 1 else ''}")
    if r.visual_tokens is not None:
        parts.append(f"{r.visual_tokens} visual tokens")
    return " · ".join(parts)


def heading(view: str) -> str:
    title, what = TITLES[view]
    return f"### {title}\n<small>{what}</small>"


def answer_markdown(r: ViewResult | None, running: bool = False) -> str:
    if r is None:
        return "running…" if running else "—"
    if r.error:
        return f"⚠ **{'Not run' if r.skipped else 'Failed'}:** {r.error}"
    answer = r.answer.strip() if r.answer else ""
    lines = [f"**Answer:** `{_truncate(answer)}`" if answer else "**Answer:** *(empty)*"]
    if r.verdict:
        lines.append(f"**{VERDICTS[r.verdict]}**")
    lines.append(f"latency {_cost(r)}")
    if r.view == "regional" and r.images:
        lines.append(f"saw {r.images[0][1]}")
    if r.view == "agent":
        crops = len(r.images)
        stopped = r.details.get("stopped")
        lines.append(f"{crops} crop{'s' if crops != 1 else ''} taken" + (f" · stopped: {stopped}" if stopped else ""))
    if r.view == "attention_zoom" and r.box:
        lines.append(f"zoom box `[{format_box(r.box)}]`")
    return "\n\n".join(lines)


def heatmap_markdown(r: ViewResult | None, query: Query | None, running: bool = False) -> str:
    if r is None:
        return "running…" if running else "—"
    if r.error:
        return f"⚠ **Failed:** {r.error}"
    lines = []
    if r.coverage is not None and query is not None and query.box is not None:
        x1, y1, x2, y2 = query.box
        area = (x2 - x1) * (y2 - y1) / (query.image.width * query.image.height)
        lines.append(f"**Coverage:** {r.coverage:.1%} of the attention mass lies in the evidence box "
                     f"(green), which is {area:.1%} of the image ({r.coverage / area:.1f}x its share)")
    else:
        lines.append("**Coverage:** give an evidence box to measure it")
    if r.box:
        lines.append(f"suggested zoom box (dashed) `[{format_box(r.box)}]`")
    meta = [f"layer {r.details.get('layer')}"]
    if r.details.get("grid_shape"):
        rows, cols = r.details["grid_shape"]
        meta.append(f"{rows}x{cols} token grid")
    lines.append(" · ".join(meta) + f" · latency {_cost(r)}")
    return "\n\n".join(lines)


def status_markdown(results: dict[str, ViewResult], started: float, done: bool) -> str:
    elapsed = time.perf_counter() - started
    if not done:
        return f"Running {len(VIEWS)} views concurrently… {len(results)}/{len(VIEWS)} done ({elapsed:.1f} s)"
    failed = [r for r in results.values() if r.error and not r.skipped]
    skipped = [r for r in results.values() if r.skipped]
    line = f"Done in {elapsed:.1f} s: {len(VIEWS) - len(failed) - len(skipped)} of {len(VIEWS)} views answered"
    if failed:
        reasons = sorted({r.error for r in failed})
        reason = reasons[0] if len(reasons) == 1 else "see the panels"
        line = f"⚠ {line}; {len(failed)} failed: {reason}"
    for r in skipped:
        line += f"; {r.view.replace('_', ' ')} view not run: {r.error}"
    return line + "."


def summary_json(query: Query | None, results: dict[str, ViewResult]) -> dict[str, Any]:
    out: dict[str, Any] = {"views": {view: results[view].summary() for view in VIEWS if view in results}}
    if query is not None:
        out = {"question": query.question, "box": list(query.box) if query.box else None,
               "reference": query.reference, "image_size": list(query.image.size), **out}
    return out
