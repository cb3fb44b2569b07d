"""The prompts of R2I (paper App. 10 and App. 8) and strict parsers for the teachers' JSON replies (the object
inventory's prompt and parser are in :mod:`zwz.distill.sam3.inventory`).

>>> parse_questions('```json\\n[{"question": "What word is on the sign?"}]\\n```', 3)
['What word is on the sign?']
>>> parse_questions('[{"q": "x"}]', 3)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
...
MalformedReply: item 0 has no non-empty "question" string
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "ANSWER_INSTRUCTION",
    "DEFAULT_EXAMPLES",
    "GROUNDING_SUFFIX",
    "MC_INSTRUCTION",
    "MalformedReply",
    "answer_prompt",
    "distractor_prompt",
    "parse_distractors",
    "parse_questions",
    "parse_yes_no",
    "question_prompt",
    "validation_prompt",
]

# Paper Sec. 3.1 / App. 8.1: appended to Q when the box is drawn on the full image.
GROUNDING_SUFFIX = "\n\nOnly focus on the objects inside the red bounding box in the image to answer this question."
# The multiple-choice instruction (paper App. 8; the same line ZoomBench's MC prompts end with).
MC_INSTRUCTION = "Answer with the option's letter from the given choices."
ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
DEFAULT_EXAMPLES = (
    "- How many red buttons are on the control panel?",
    "- What is the last word printed on the small label?",
    "- What color is the stripe on the runner's left shoe?",
    "- What shape is the window above the door?",
    "- What material is the handrail made of?",
    "- Which country's flag is flying on the boat?",
)
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

# App. 10, "Prompt of Question Generation" (verbatim but for the number of questions and the examples).
_QUESTION_PROMPT = """You are an expert specialist in generating Visual Question Answering (VQA) datasets. Your task is to generate {n_words} high-quality and valid questions based solely on the provided image.

Reference Examples (use these for inspiration on questioning angles):
{examples_str}

**Core Generation Rules:**

- **1. Image-based Questions:** All questions must be answerable by examining the image provided. The answer to each question must be identical, accurate, and concise. It can be a **short, factual, and concrete string** (e.g., a number, a noun, or text).
- **2. Content Relevance:** Question types include, but are not limited to:
  - **Object Identification:** Identify the exact sub-component or item (e.g., 'What is the person holding?' Answer: 'Apple').
  - **OCR:** Recognizing text within the image.
- **3. Quality Control:** If the image is of such low quality that it is impossible to generate meaningful questions, return an empty JSON list: [].
- **4. Diversity of Questions:** Aim for a diverse range of questions. This includes counting, spatial relationships, scene recognition, anomaly detection, shape, material, structure, etc.

**Output Format:**

Please carefully observe the image and generate your response in the following JSON format:

```
[
{json_lines}
]
```"""


class MalformedReply(ValueError):
    """A teacher's reply that is not the JSON the prompt asked for (counted and dropped, never fatal)."""


def question_prompt(k: int = 3, examples: tuple[str, ...] = DEFAULT_EXAMPLES) -> str:
    """The App. 10 question-generation prompt asking for ``k`` questions.

    >>> "three high-quality" in question_prompt(3) and '{"question": "Question 3"}' in question_prompt(3)
    True
    """
    if k < 1:
        raise ValueError(f"questions per crop must be >= 1, got {k}")
    lines = ",\n".join(f'  {{"question": "Question {i}"}}' for i in range(1, k + 1))
    return _QUESTION_PROMPT.format(n_words=_NUMBER_WORDS.get(k, str(k)), examples_str="\n".join(examples),
                                   json_lines=lines)  # fmt: skip


def answer_prompt(question: str) -> str:
    """What an answer teacher sees beside the crop."""
    return f"{question}\n{ANSWER_INSTRUCTION}"


def validation_prompt(question: str) -> str:
    """The optional check (official code): is the question unambiguous and answerable from the full image?"""
    return (
        "The first image is a full image; the second is a zoomed-in crop of one region of it.\n"
        f"Question: {question}\n"
        "Is this question unambiguous and answerable from the full image, referring to the same thing as in the "
        "crop? Reply with Yes or No only."
    )


def distractor_prompt(question: str, answer: str) -> str:
    """Ask a teacher for three wrong but plausible options (optional multiple-choice stage)."""
    return (
        f"Question about the image: {question}\nCorrect answer: {answer}\n"
        "Write three different wrong answers that are plausible for this image and question, each as short as the "
        'correct answer. Reply with a JSON list of three strings only, e.g. ["...", "...", "..."].'
    )


def _json_payload(text: str) -> Any:
    text = (text or "").strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedReply(f"not JSON ({exc.msg} at char {exc.pos})") from None


def parse_questions(text: str, k: int) -> list[str]:
    """The questions of a generator reply: a JSON list of ``{"question": str}``; at most ``k`` are kept.

    Anything else raises :class:`MalformedReply`. An empty list is valid (the prompt's low-quality answer).
    """
    data = _json_payload(text)
    if not isinstance(data, list):
        raise MalformedReply(f"expected a JSON list, got {type(data).__name__}")
    questions: list[str] = []
    for i, entry in enumerate(data):
        value = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise MalformedReply(f'item {i} has no non-empty "question" string')
        if value.strip() not in questions:
            questions.append(value.strip())
    return questions[:k]


def _strings(text: str, what: str) -> list[str]:
    data = _json_payload(text)
    if not isinstance(data, list) or not all(isinstance(v, str) and v.strip() for v in data):
        raise MalformedReply(f"expected a JSON list of non-empty strings ({what})")
    return [v.strip() for v in data]


def parse_distractors(text: str, answer: str) -> list[str]:
    """Three distinct wrong options, none equal to ``answer`` (normalised), else :class:`MalformedReply`.

    >>> parse_distractors('["blue", "green", "Red", "pink"]', "red")
    ['blue', 'green', 'pink']
    """
    from zwz.scoring import normalize_text

    seen = {normalize_text(answer)}
    out = []
    for option in _strings(text, "distractors"):
        norm = normalize_text(option)
        if norm and norm not in seen:
            seen.add(norm)
            out.append(option)
    if len(out) < 3:
        raise MalformedReply(f"needs 3 distinct wrong options, got {len(out)}")
    return out[:3]


def parse_yes_no(text: str) -> bool:
    """Yes/No reply -> bool; anything else is malformed.

    >>> parse_yes_no("Yes."), parse_yes_no("no")
    (True, False)
    """
    word = re.sub(r"[^a-z]", "", (text or "").strip().split("\n")[0].lower())
    if word.startswith("yes"):
        return True
    if word.startswith("no"):
        return False
    raise MalformedReply(f"expected Yes or No, got {text[:40]!r}")
