"""Training fixtures: a small colour-square data set in both of distill's parquet layouts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
QUESTION = "What color is the square? Answer with one word."
# 64 px images and a 64x64 pixel budget: a handful of visual tokens, so a step takes well under a second.
IMAGE_SIZE = 64
MAX_PIXELS = 64 * 64


def colour_records(n: int = 4):
    from PIL import Image, ImageDraw

    from zwz.distill.training_data import TrainingRecord

    records = []
    for i in range(n):
        name = list(COLOURS)[i % len(COLOURS)]
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (240, 240, 240))
        x = 4 + 5 * i
        ImageDraw.Draw(image).rectangle([x, x, x + 20, x + 20], fill=COLOURS[name])
        buf = io.BytesIO()
        image.save(buf, "PNG")
        records.append(TrainingRecord(f"square{i}", [buf.getvalue()], QUESTION, name, dimension="color",
                                      box=[float(x), float(x), x + 21.0, x + 21.0]))
    return records


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> dict[str, Path]:
    """``{"rl": verl-layout parquet, "trl": TRL-layout parquet}`` of four colour-square records."""
    from zwz.distill.training_data import write_rl_parquet, write_trl_parquet

    root = tmp_path_factory.mktemp("train-data")
    records = colour_records()
    write_rl_parquet(records, root / "rl.parquet")
    write_trl_parquet(records, root / "trl.parquet")
    return {"rl": root / "rl.parquet", "trl": root / "trl.parquet"}


@pytest.fixture(scope="session")
def spread_reward_file(tmp_path_factory) -> Path:
    """An extra TRL reward that alternates 0, 1 over the completions, so every GRPO group has spread (non-zero
    advantages) on random-weight models, whose answers zwz's reward scores all alike."""
    path = tmp_path_factory.mktemp("rewards") / "spread_reward.py"
    path.write_text(
        "def alternating(prompts, completions, **columns):\n"
        "    return [float(i % 2) for i in range(len(completions))]\n"
    )
    return path
