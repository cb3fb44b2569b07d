"""ZoomWorld's vocabulary: colours, words, materials, shapes, flags, the panel fact type and seeded picks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Rng = np.random.Generator
Box = tuple[int, int, int, int]
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 150, 60), "blue": (35, 75, 215), "yellow": (240, 205, 30),
    "orange": (245, 135, 25), "purple": (135, 55, 175), "pink": (240, 120, 180), "brown": (125, 75, 35),
    "black": (20, 20, 20), "cyan": (30, 195, 215),
}  # fmt: skip
WORDS = (
    "ROOST", "COAST", "GHOST", "PLANT", "RIVER", "STONE", "LEMON", "TIGER", "CABLE", "MAPLE", "ORBIT", "PILOT",
    "QUILT", "RADAR", "SOLAR", "TULIP", "VIVID", "WALTZ", "ZEBRA", "BRAVO", "CEDAR", "DELTA", "EMBER", "FABLE",
    "GLYPH", "HAVEN", "IVORY", "JOLLY", "KAYAK", "LUNAR", "MOTEL", "NOBLE", "OPERA", "PRISM", "RELAY", "SPOKE",
    "TORCH", "UNITY", "VAPOR", "WHEAT", "YACHT", "ANCHOR", "BASKET", "CANDLE", "DINNER", "FALCON", "GARDEN",
    "HARBOR", "JUNGLE", "KETTLE", "LADDER", "MARKET", "NICKEL", "PEPPER", "RABBIT", "SILVER", "TICKET", "WINTER",
)  # fmt: skip
MATERIALS = ("wood", "brick", "tile", "fabric", "metal", "stone")
SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon", "star", "diamond", "cross")
COUNTABLE = ("circle", "triangle", "square", "star", "diamond")
ARRANGEMENTS = ("row", "column", "diagonal", "ring", "grid")
# (country, layout, colours). Layouts: vertical/horizontal stripes, nordic cross (bg, cross[, inner]),
# plus (Swiss square flag), cross (St George), disc (bg, disc; Bangladesh's sits left of centre).
FLAGS: tuple[tuple[str, str, tuple[tuple[int, int, int], ...]], ...] = (
    ("France", "vertical", ((0, 35, 149), (255, 255, 255), (237, 41, 57))),
    ("Italy", "vertical", ((0, 146, 70), (255, 255, 255), (206, 43, 55))),
    ("Ireland", "vertical", ((22, 155, 98), (255, 255, 255), (255, 136, 62))),
    ("Belgium", "vertical", ((20, 20, 20), (253, 218, 36), (239, 51, 64))),
    ("Romania", "vertical", ((0, 43, 127), (252, 209, 22), (206, 17, 38))),
    ("Nigeria", "vertical", ((0, 135, 81), (255, 255, 255), (0, 135, 81))),
    ("Germany", "horizontal", ((20, 20, 20), (221, 0, 0), (255, 206, 0))),
    ("Russia", "horizontal", ((255, 255, 255), (0, 57, 166), (213, 43, 30))),
    ("Netherlands", "horizontal", ((174, 28, 40), (255, 255, 255), (33, 70, 139))),
    ("Austria", "horizontal", ((200, 16, 46), (255, 255, 255), (200, 16, 46))),
    ("Hungary", "horizontal", ((206, 41, 57), (255, 255, 255), (71, 112, 80))),
    ("Bulgaria", "horizontal", ((255, 255, 255), (0, 150, 110), (214, 38, 18))),
    ("Ukraine", "horizontal", ((0, 87, 183), (255, 215, 0))),
    ("Poland", "horizontal", ((255, 255, 255), (220, 20, 60))),
    ("Estonia", "horizontal", ((0, 114, 206), (20, 20, 20), (255, 255, 255))),
    ("Lithuania", "horizontal", ((253, 185, 19), (0, 106, 68), (193, 39, 45))),
    ("Sweden", "nordic", ((0, 106, 167), (254, 204, 2))),
    ("Denmark", "nordic", ((200, 16, 46), (255, 255, 255))),
    ("Finland", "nordic", ((255, 255, 255), (0, 47, 108))),
    ("Norway", "nordic", ((186, 12, 47), (255, 255, 255), (0, 32, 91))),
    ("Iceland", "nordic", ((2, 82, 156), (255, 255, 255), (220, 30, 53))),
    ("Switzerland", "plus", ((218, 41, 28), (255, 255, 255))),
    ("England", "cross", ((255, 255, 255), (206, 17, 36))),
    ("Japan", "disc", ((255, 255, 255), (188, 0, 45))),
    ("Bangladesh", "disc", ((0, 106, 78), (244, 42, 65))),
)


@dataclass(frozen=True)
class Fact:
    """What the evidence panel shows: the question about it, the answer and three wrong options."""

    question: str
    answer: str
    distractors: tuple[str, str, str]
    variant: str


# ------------------------------------------------------------------------------------------ random helpers
def pick(rng: Rng, seq: Sequence[object]) -> object:
    return seq[int(rng.integers(len(seq)))]


def sample(rng: Rng, seq: Sequence[object], k: int) -> list[object]:
    return [seq[int(i)] for i in rng.permutation(len(seq))[:k]]


def wrong(rng: Rng, pool: Sequence[str], answer: str) -> tuple[str, str, str]:
    a, b, c = sample(rng, [p for p in pool if p != answer], 3)
    return (str(a), str(b), str(c))

