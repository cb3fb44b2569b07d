"""The training log (one JSON line per logged step) and its curve (the paper's Fig. 8: reward over steps).

    zwz train grpo ... --out runs/grpo   # writes runs/grpo/train_log.jsonl and runs/grpo/training_curve.png
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["LOG_NAME", "CURVE_NAME", "read_log", "plot_curve", "smooth"]

LOG_NAME = "train_log.jsonl"
CURVE_NAME = "training_curve.png"
# What each panel plots, in order, when the log has it: GRPO logs both, SFT only the loss.
_PANELS = (("reward", "mean reward per step"), ("loss", "training loss"))


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The per-step entries of a training log (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not pulled towards 0.

    >>> [round(v, 3) for v in smooth([1.0, 0.0, 1.0], weight=0.5)]
    [1.0, 0.333, 0.714]
    """
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def _number(value: Any) -> float | None:
    """
    >>> _number(0.5), _number(None), _number(float("nan")), _number("x")
    (0.5, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def plot_curve(entries: list[dict[str, Any]], out_png: str | Path, *, title: str = "training") -> Path | None:
    """Plot reward (and loss) over optimizer steps to ``out_png``; None when nothing was logged yet."""
    panels = [(key, label) for key, label in _PANELS if any(_number(e.get(key)) is not None for e in entries)]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        # None/NaN: nothing to score that step (e.g. every reward undecided without a judge)
        points = [(e["step"], _number(e.get(key))) for e in entries if _number(e.get(key)) is not None]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, color="tab:blue", alpha=0.35, linewidth=1, label="per step")
        ax.plot(steps, smooth(values), color="tab:blue", linewidth=2, label="smoothed (EMA 0.8)")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(out_png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)  # a viewer never opens a half-written image
    return out_png
