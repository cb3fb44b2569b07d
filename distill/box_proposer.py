"""The SAM3 box proposer as the pipeline sees it (:class:`zwz.distill.proposals.BoxProposer`): object names from
the inventory teacher in, one box per object found exactly once with score >= the threshold out.

Objects SAM3 does not keep are counted by reason (``sam3_multiple_instances``, ``sam3_low_score``, ...).
The model itself lives in :mod:`zwz.distill.sam3.boxes` (imported lazily: it needs the SAM3 weights as a
local folder, e.g. ``facebook/sam3``, and is only loaded when ``--sam3-model DIR`` is given).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from PIL import Image

from zwz.distill.proposals import BoxProposer, NativeBox

__all__ = ["sam3_proposer", "to_native_box"]


def to_native_box(found: Any, default_label: str = "") -> NativeBox:
    """A proposer result (an object with ``box`` [, ``label``, ``score``], a dict, or a 4-tuple) as a NativeBox.

    >>> to_native_box({"box": [1, 2, 3, 4], "label": "cup", "score": 0.9})
    NativeBox(box=(1.0, 2.0, 3.0, 4.0), label='cup', meta=(('score', 0.9),))
    """
    if isinstance(found, dict):
        box, label, score = found["box"], found.get("label", default_label), found.get("score")
    elif hasattr(found, "box"):
        box, label, score = found.box, getattr(found, "label", default_label), getattr(found, "score", None)
    else:
        box, label, score = found, default_label, None
    meta = (("score", float(score)),) if score is not None else ()
    return NativeBox(tuple(float(v) for v in box), str(label), meta)  # type: ignore[arg-type]


def sam3_proposer(model_dir: str, score_threshold: float = 0.75) -> BoxProposer:
    """A BoxProposer over SAM3 weights in ``model_dir`` (see :mod:`zwz.distill.sam3.boxes`)."""
    try:
        from zwz.distill.sam3 import boxes as sam3_boxes
    except ImportError as exc:
        raise ImportError(f"--sam3-model needs zwz.distill.sam3.boxes and its dependencies: {exc}") from exc

    def propose(image: Image.Image, object_names: Sequence[str]) -> tuple[list[NativeBox], Counter[str]]:
        results = sam3_boxes.propose_boxes_sam3(image, list(object_names), model_dir, score_threshold=score_threshold)
        kept = [to_native_box(r, r.name) for r in results if r.kept]
        return kept, Counter(f"sam3_{r.reason}" for r in results if not r.kept)

    return propose
