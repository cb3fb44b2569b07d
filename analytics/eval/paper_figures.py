"""The paper's figures that ``zwz eval-compare`` prints beside an arm, each with its table and row.

Every value is copied from the paper (../shared/seed/000_ca4b048902bc5552.txt, "Zooming without Zooming"),
in percent as printed; nothing is derived. An arm of the ablation (Table 6: Qwen3-VL-8B trained by DAPO on 10K
samples of each synthesis strategy) has only its Zoom-Bench accuracy there: the paper gives the zooming gap
(Table 7) and the attention coverage (Table 8) only for the base model and for ZwZ-8B, the full recipe
(R2I + bbox-in-image on 74K samples). Those two are kept under their own keys, ``base`` and ``zwz``; a ZwZ-8B
figure shown beside the bbox-in-image *ablation* arm is marked as the same strategy at another data scale
(:attr:`PaperFigure.exact` False), never passed off as the arm's own.

    PAPER_FIGURES["zooming_gap"]["base"]["all"].value   # 25.21: Table 7, Qwen3-VL-8B, Zooming Gap, Avg
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAPER_ARMS", "PAPER_FIGURES", "PaperFigure", "paper_figure"]


@dataclass(frozen=True)
class PaperFigure:
    """A number as printed in the paper (percent) and where it is; ``exact`` False: not this arm's own entry but
    the nearest one (the same strategy at the full 74K data scale)."""

    value: float
    source: str
    exact: bool = True


# --paper-arms key -> the paper's name for it.
PAPER_ARMS = {
    "direct": "Direct Synthesis (Table 6)",
    "bbox_in_image": "R2I + bbox-in-image (Table 6)",
    "bbox_in_question": "R2I + bbox-in-question (Table 6)",
    "no_box": "R2I + no-bbox (Table 6)",
    "base": "Qwen3-VL-8B, the base model before R2I training (Tables 7, 8)",
    "zwz": "ZwZ-8B, the full recipe: R2I + bbox-in-image on 74K samples (Tables 7, 8)",
}

_DIMS = ("counting", "ocr", "color", "structure", "material", "identification")  # Table 7's column order


def _row(table: str, who: str, what: str, values: tuple[float, ...], avg: float) -> dict[str, PaperFigure]:
    """A Table 7 row: the six dimensions and the item-weighted Avg (one source: the row; the column says which)."""
    source = f"{table}: {who}, {what} row (six dimensions and Avg)"
    return {d: PaperFigure(v, source) for d, v in zip(_DIMS, values)} | {"all": PaperFigure(avg, source)}


_T6 = "Table 6 (Zoom-Bench column; Qwen3-VL-8B, 10K samples)"
_BASE_GLOBAL = _row("Table 7", "Qwen3-VL-8B", "Global", (29.90, 47.97, 38.02, 37.42, 39.34, 43.33), 37.87)
_BASE_REGIONAL = _row("Table 7", "Qwen3-VL-8B", "Regional", (48.04, 69.11, 64.05, 74.19, 63.93, 68.33), 63.08)
_BASE_GAP = _row("Table 7", "Qwen3-VL-8B", "Zooming Gap", (18.14, 21.14, 26.03, 36.77, 24.59, 25.00), 25.21)
_ZWZ_GLOBAL = _row("Table 7", "ZwZ-8B", "Global", (40.69, 67.48, 68.60, 58.71, 57.38, 55.00), 58.11)
_ZWZ_REGIONAL = _row("Table 7", "ZwZ-8B", "Regional", (54.90, 81.30, 81.40, 76.13, 78.69, 75.00), 73.37)
_ZWZ_GAP = _row("Table 7", "ZwZ-8B", "Zooming Gap", (14.21, 13.82, 12.80, 17.42, 21.31, 20.00), 15.26)
_BASE_COVERAGE = {"all": PaperFigure(17.39, "Table 8: QwenVL-8B, Coverage (%)")}
_ZWZ_COVERAGE = {"all": PaperFigure(21.64, "Table 8: ZwZ-8B, Coverage (%)")}


def _nearest(row: dict[str, PaperFigure]) -> dict[str, PaperFigure]:
    """ZwZ-8B's figures as the bbox-in-image ablation arm's nearest entry (same strategy, 74K not 10K)."""
    return {k: PaperFigure(f.value, f"{f.source} (ZwZ-8B: R2I + bbox-in-image at 74K samples; the 10K ablation "
                                    "arm has no entry)", exact=False) for k, f in row.items()}


# statistic -> arm key -> "all" or a dimension -> figure. Global accuracy is the single-pass (Global-View) one.
PAPER_FIGURES: dict[str, dict[str, dict[str, PaperFigure]]] = {
    "global_accuracy": {
        "direct": {"all": PaperFigure(40.95, f"{_T6}: Direct Synthesis")},
        "bbox_in_image": {"all": PaperFigure(52.90, f"{_T6}: R2I + bbox-in-image")},
        "bbox_in_question": {"all": PaperFigure(46.98, f"{_T6}: R2I + bbox-in-question")},
        "no_box": {"all": PaperFigure(46.27, f"{_T6}: R2I + no-bbox")},
        "base": _BASE_GLOBAL,
        "zwz": _ZWZ_GLOBAL,
    },
    "regional_accuracy": {"base": _BASE_REGIONAL, "zwz": _ZWZ_REGIONAL, "bbox_in_image": _nearest(_ZWZ_REGIONAL)},
    "zooming_gap": {"base": _BASE_GAP, "zwz": _ZWZ_GAP, "bbox_in_image": _nearest(_ZWZ_GAP)},
    "coverage": {"base": _BASE_COVERAGE, "zwz": _ZWZ_COVERAGE, "bbox_in_image": _nearest(_ZWZ_COVERAGE)},
}


def paper_figure(statistic: str, arm: str | None, key: str = "all") -> PaperFigure | None:
    """The paper's figure for ``statistic`` of ``arm`` ("all" or a dimension), or None where it gives none.

    >>> paper_figure("global_accuracy", "no_box").value, paper_figure("zooming_gap", "no_box")
    (46.27, None)
    >>> f = paper_figure("zooming_gap", "bbox_in_image"); f.value, f.exact
    (15.26, False)
    """
    if arm is None:
        return None
    return PAPER_FIGURES.get(statistic, {}).get(arm, {}).get(key)
