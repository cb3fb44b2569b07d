"""Zoom-out: the grounding transformation G(I, Q, B) (paper Sec. 3.1) and its Table 6 ablations, plus the
multiple-choice layout.

- ``bbox_in_image`` (the method): B grown 5% per side, drawn red (5 px) on I; Q + :data:`GROUNDING_SUFFIX`;
- ``bbox_in_question``: I unchanged; the box coordinates (pixels of I) as text in Q';
- ``no_box``: (I, Q) as they are;
- ``direct``: the teacher worked on the full image; (I, Q) as they are.

>>> ground_question("What is written?", "bbox_in_image", None).endswith("to answer this question.")
True
>>> ground_question("What is written?", "bbox_in_question", (10.4, 20, 30, 40.6))
'What is written?\\n\\nOnly focus on the objects inside the bounding box [10, 20, 30, 41] in the image to answer this question.'
>>> print(multiple_choice_question("What colour?", ["red", "blue", "green", "pink"]))
What colour?
A. red
B. blue
C. green
D. pink
Answer with the option's letter from the given choices.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from PIL import Image

from zwz.distill.imaging import draw_box, expand_box
from zwz.distill.prompts import GROUNDING_SUFFIX, MC_INSTRUCTION

__all__ = ["ground_image", "ground_question", "guess_dimension", "multiple_choice_question", "shuffle_options"]

LETTERS = "ABCDEFGHIJ"
# Keyword hints from question wording to the six ZoomBench dimensions (first match wins): a label for reports
# and the ``ability`` column, never used for scoring.
_DIMENSION_WORDS = (
    ("counting", r"\bhow many\b|\bnumber of\b|\bcount\b"),
    ("ocr", r"\bword\b|\btext\b|\bwritten\b|\bprinted\b|\bsay\b|\bread\b|\bletters?\b|\blabel(?:led)? says\b"),
    ("color", r"\bcolou?rs?\b"),
    ("material", r"\bmaterial\b|\bmade of\b|\btexture\b"),
    ("structure", r"\bshape\b|\bpattern\b|\barranged\b|\bsides\b|\bstructure\b|\blayout\b"),
    ("identification", r"\bwhich (?:country|brand|species|animal)\b|\bflag\b|\bwhat (?:kind|type|brand)\b"),
)


def guess_dimension(question: str) -> str | None:
    """The ZoomBench dimension a question's wording suggests, or None.

    >>> guess_dimension("How many red stars are there?"), guess_dimension("Which country's flag is this?")
    ('counting', 'identification')
    """
    low = question.lower()
    for name, pattern in _DIMENSION_WORDS:
        if re.search(pattern, low):
            return name
    return None


def ground_image(image: Image.Image, box: Sequence[float], *, expand: float = 0.05, width: int = 5
                 ) -> tuple[Image.Image, tuple[float, float, float, float]]:  # fmt: skip
    """I' (the red box drawn on the full image) and the drawn box (B expanded ``expand`` per side)."""
    grown = expand_box(box, expand, image.size)
    return draw_box(image, grown, width=width), grown


def ground_question(question: str, variant: str, box: Sequence[float] | None) -> str:
    """Q' for a grounding variant (``box`` is needed for ``bbox_in_question``)."""
    if variant == "bbox_in_image":
        return question + GROUNDING_SUFFIX
    if variant == "bbox_in_question":
        if box is None:
            raise ValueError("bbox_in_question needs a box")
        coords = ", ".join(str(int(round(v))) for v in box)
        return f"{question}\n\nOnly focus on the objects inside the bounding box [{coords}] in the image to answer this question."
    if variant in ("no_box", "direct"):
        return question
    raise ValueError(f"unknown grounding variant {variant!r}")


def shuffle_options(answer: str, distractors: Sequence[str], seed: str) -> tuple[list[str], str]:
    """The answer and distractors in a seeded order, and the answer's letter (same seed, same order).

    >>> shuffle_options("red", ["blue", "green", "pink"], "item-1") == shuffle_options("red", ["blue", "green", "pink"], "item-1")
    True
    """
    options = [answer, *distractors]
    random.Random(seed).shuffle(options)
    return options, LETTERS[options.index(answer)]


def multiple_choice_question(question: str, options: Sequence[str]) -> str:
    """The question, options ``A. ...`` one per line, then the instruction (paper App. 8)."""
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{question}\n{lines}\n{MC_INSTRUCTION}"
