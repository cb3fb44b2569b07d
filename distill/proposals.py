"""Box proposals P(I) (paper Sec. 3.1): native annotations, or a VLM object inventory plus SAM3; the tau filter.

Native annotations are matched to pool images by file name:

- COCO-style JSON (``images[].file_name``, ``annotations[].bbox`` as x, y, w, h, ``categories[].name``); an
  object is kept only when its category appears once in the image, the paper's "clearly identifiable objects
  that appear only once" rule;
- a ZoomWorld ``items.jsonl``: every panel of the scene (``meta.panels``) is a box.

SAM3 proposals go through :class:`BoxProposer` (``zwz.distill.sam3.boxes`` provides the real one).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

logger = logging.getLogger(__name__)

__all__ = ["BoxProposer", "NativeBox", "filter_boxes", "load_annotations"]

MIN_BOX_SIDE = 4  # px: a box thinner than this cannot hold an answerable detail


@dataclass(frozen=True)
class NativeBox:
    """One proposed box in pixels of the original image (x1, y1, x2, y2) and what it shows."""

    box: tuple[float, float, float, float]
    label: str
    meta: tuple[tuple[str, Any], ...] = ()


class BoxProposer(Protocol):
    """What the SAM3 stage must provide: boxes for the named objects found exactly once, and the drop reasons
    of the others."""

    def __call__(self, image: Image.Image, object_names: Sequence[str]) -> tuple[list[NativeBox], Counter[str]]: ...


def _coco(data: dict[str, Any]) -> dict[str, list[NativeBox]]:
    names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
    files = {im["id"]: Path(str(im["file_name"])).name for im in data.get("images", [])}
    per_image: dict[str, list[tuple[str, list[float]]]] = {}
    for ann in data.get("annotations", []):
        if ann.get("iscrowd"):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        label = names.get(ann.get("category_id"), str(ann.get("category_id")))
        per_image.setdefault(files[ann["image_id"]], []).append((label, [x, y, x + w, y + h]))
    out: dict[str, list[NativeBox]] = {}
    for name, anns in per_image.items():
        counts = Counter(label for label, _ in anns)
        out[name] = [
            NativeBox(tuple(box), label, (("instances", counts[label]),)) for label, box in anns  # type: ignore[arg-type]
        ]
    return out


def _zoomworld(path: Path) -> dict[str, list[NativeBox]]:
    out: dict[str, list[NativeBox]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            panels = (row.get("meta") or {}).get("panels")
            if panels is None:
                raise ValueError(f"{path}: ZoomWorld rows need meta.panels (regenerate with this version)")
            out[Path(str(row["image"])).name] = [
                NativeBox(tuple(float(v) for v in p["box"]), f"panel {p['label']}",  # type: ignore[arg-type]
                          (("dimension", p["dimension"]), ("instances", 1)))
                for p in panels
            ]  # fmt: skip
    return out


def load_annotations(path: str | Path) -> dict[str, list[NativeBox]]:
    """File name -> native boxes, from a COCO JSON or a ZoomWorld ``items.jsonl``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no annotations at {path}")
    if path.suffix.lower() == ".jsonl":
        return _zoomworld(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise ValueError(f"{path}: expected COCO-style JSON with 'images' and 'annotations'")
    return _coco(data)


def filter_boxes(
    boxes: Sequence[NativeBox], size: tuple[int, int], tau: float, max_boxes: int = 0
) -> tuple[list[tuple[NativeBox, float]], Counter[str]]:
    """Keep boxes with area(B)/area(I) < ``tau``, a single instance and sides >= 4 px; smallest first if capped.

    Returns the kept boxes with their area fraction, and the drop reasons.

    >>> kept, drops = filter_boxes([NativeBox((0, 0, 50, 50), "a"), NativeBox((0, 0, 10, 10), "b")], (100, 100), 0.1)
    >>> [(b.label, f) for b, f in kept], dict(drops)
    ([('b', 0.01)], {'too_large': 1})
    """
    from zwz.distill.imaging import box_area_fraction

    drops: Counter[str] = Counter()
    kept: list[tuple[NativeBox, float]] = []
    for b in boxes:
        x1, y1, x2, y2 = b.box
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(size[0]), x2), min(float(size[1]), y2)
        if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
            drops["box_too_small"] += 1
            continue
        if dict(b.meta).get("instances", 1) != 1:
            drops["not_unique"] += 1
            continue
        fraction = box_area_fraction((x1, y1, x2, y2), size)
        if not fraction < tau:
            drops["too_large"] += 1
            continue
        kept.append((NativeBox((x1, y1, x2, y2), b.label, b.meta), round(fraction, 6)))
    if max_boxes and len(kept) > max_boxes:
        drops["over_max_boxes"] += len(kept) - max_boxes
        kept = sorted(kept, key=lambda kf: kf[1])[:max_boxes]
    return kept, drops
