"""The funnel report of a ``zwz distill`` run: ``report.json``, ``report.md``, ``funnel.png`` (records in and out
of every stage, with every drop reason) and ``contact_sheet.png`` (kept items: I' with its box, Q', A, the crop).
"""

from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zwz.distill.config import DistillConfig
from zwz.distill.records import Item

logger = logging.getLogger(__name__)

__all__ = ["write_report"]

CONTACT_SHEET_ITEMS = 12


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# R2I distillation funnel", "",
        f"Kept items: **{report['kept']}**; teacher requests: {report['calls']['requests']} "
        f"({report['calls']['cache_hits']} cache hits, {report['calls']['retries']} retries, "
        f"{report['calls']['failures']} failures); requests per kept item: {report['requests_per_kept_item']}; "
        f"tokens per kept item: {report['tokens_per_kept_item']}; wall time {report['seconds']} s.", "",
        "| stage | in | out | dropped (reason: count) | seconds |", "|---|---:|---:|---|---:|",
    ]  # fmt: skip
    for s in report["stages"]:
        drops = ", ".join(f"{k}: {v}" for k, v in s["drops"].items()) or "-"
        lines.append(f"| {s['name']} | {s['items_in']} | {s['items_out']} | {drops} | {s['seconds']} |")
    lines += ["", "Outputs: " + ", ".join(f"`{v}`" for v in report["outputs"].values()), ""]
    return "\n".join(lines)


def _funnel_png(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = report["stages"]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(stages) + 1.2))
    names = [s["name"] for s in stages][::-1]
    ax.barh(names, [s["items_in"] for s in stages][::-1], color="#d9d9d9", label="in")
    ax.barh(names, [s["items_out"] for s in stages][::-1], color="#3b7dd8", label="out")
    for y, s in enumerate(stages[::-1]):
        drops = ", ".join(f"{k} {v}" for k, v in s["drops"].items())
        ax.text(max(s["items_in"], s["items_out"], 1) * 1.01, y, f"{s['items_out']}/{s['items_in']}  {drops}", va="center", fontsize=8)
    ax.set_xlabel("records")
    ax.set_title(f"R2I funnel: {report['kept']} kept")
    ax.legend(loc="lower right")
    ax.set_xlim(0, max([max(s["items_in"], s["items_out"]) for s in stages] + [1]) * 1.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _contact_sheet(items: list[Item], path: Path, columns: int = 3) -> None:
    """Kept items in a grid: I' (as the student sees it) beside the key-region crop, then Q' and A."""
    from PIL import Image, ImageDraw

    from zwz.distill.imaging import zoom_in

    shown = items[:CONTACT_SHEET_ITEMS]
    if not shown:
        return
    cell_w, thumb_h, text_h = 640, 300, 130
    rows = (len(shown) + columns - 1) // columns
    sheet = Image.new("RGB", (cell_w * min(columns, len(shown)), (thumb_h + text_h) * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for i, item in enumerate(shown):
        x, y = (i % columns) * cell_w, (i // columns) * (thumb_h + text_h)
        with Image.open(item.image_path) as im:
            full = im.convert("RGB")
            full.thumbnail((cell_w * 2 // 3, thumb_h))
        with Image.open(item.qa.region.image.path) as im:
            crop = zoom_in(im, item.qa.region.box, 1.0)
            crop.thumbnail((cell_w // 3 - 12, thumb_h))
        sheet.paste(full, (x, y))
        sheet.paste(crop, (x + cell_w * 2 // 3 + 4, y))
        text = "\n".join(textwrap.wrap(f"Q': {item.question}", 100)[:5] + [f"A: {item.answer}"])
        draw.text((x + 4, y + thumb_h + 4), text, fill=(0, 0, 0))
    sheet.save(path)


def write_report(out: Path, config: DistillConfig, stages: list, calls: dict[str, Any], items: list[Item],
                 outputs: dict[str, Any], *, seconds: float) -> dict[str, Any]:  # fmt: skip
    """Write the four report files under ``out``; returns the JSON report."""
    kept = len(items)
    tokens = calls.get("prompt_tokens", 0) + calls.get("completion_tokens", 0)
    report = {
        "kept": kept,
        "mode": "benchmark" if config.benchmark else "training",
        "variant": "no_box" if config.benchmark else config.variant,
        "stages": [asdict(s) for s in stages],
        "calls": calls,
        "requests_per_kept_item": round(calls.get("requests", 0) / kept, 2) if kept else None,
        "tokens_per_kept_item": round(tokens / kept, 1) if kept else None,
        "seconds": round(seconds, 2),
        "outputs": outputs,
        "fingerprint": config.fingerprint(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    _funnel_png(report, out / "funnel.png")
    _contact_sheet(items, out / "contact_sheet.png")
    logger.info("funnel report in %s (kept %d)", out / "report.md", kept)
    return report
