"""The ``image_zoom_in_tool`` of Qwen3-VL's "think with images" agent: its schema, reading calls out of a
reply and validating them (cutting the crop: ``zwz.analytics.zoom.crop``).

Definitions follow Qwen-Agent's ``image_zoom_in_tool`` (``qwen_agent/tools/image_zoom_in_qwen3vl.py``) and the
Qwen3-VL cookbook ``think_with_images.ipynb``: the name, the description and the three required parameters
are theirs word for word, because the model was trained on that wording; ``bbox_2d`` is in Qwen3-VL's 0-1000
relative coordinates and ``img_idx`` counts every image seen so far (the originals, then each crop in order).

Crop rule, as Qwen-Agent's: the box is mapped to the chosen image's pixels; when a side is under 32 px both
sides are scaled by ``32 / shorter side`` around the box centre (the aspect ratio is kept). Where Qwen-Agent
clips the grown box at the image border and falls back to the small box if clipping left a side under 32,
``crop.grow_box`` slides the grown box back inside the image, so a crop is always at least 32 px (or the whole side of a
smaller image). Qwen-Agent then upsamples every crop to at least ``256 * 32 * 32`` pixels; here the crop is
returned as is (the serving processor resizes it to its own pixel budget) unless ``min_pixels`` /
``max_pixels`` ask for a client-side resize (``QWEN_AGENT_CROP_MIN_PIXELS`` reproduces Qwen-Agent).

    calls = extract_tool_calls(reply_text)                 # [(raw block, parsed dict or ToolCallError)]
    request = validate_zoom_call(calls[0][1], n_images=2)  # ZoomRequest or ToolCallError
    crop = crop_image(image, crop_box(request.bbox_2d, image.size))
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from zwz.analytics.zoom.crop import COORD_MAX as _COORD_MAX
from zwz.reply_format import split_thinking, strip_tool_calls, tool_call_blocks

__all__ = [
    "ZOOM_TOOL",
    "ZOOM_TOOL_NAME",
    "ToolCallError",
    "ZoomRequest",
    "clean_answer",
    "extract_tool_calls",
    "format_tool_call",
    "parse_call_json",
    "split_thinking",
    "validate_zoom_call",
]

ZOOM_TOOL_NAME = "image_zoom_in_tool"
_MAX_CALL_CHARS = 20_000  # a longer block is not a zoom call; also bounds ast.literal_eval's work

# Qwen-Agent's schema, wording included (see the module docstring).
ZOOM_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": ZOOM_TOOL_NAME,
        "description": "Zoom in on a specific region of an image by cropping it based on a bounding box (bbox) "
                       "and an optional object label",
        "parameters": {
            "type": "object",
            "properties": {
                "bbox_2d": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 4,
                    "maxItems": 4,
                    "description": "The bounding box of the region to zoom in, as [x1, y1, x2, y2], where (x1, y1) "
                                   "is the top-left corner and (x2, y2) is the bottom-right corner",
                },
                "label": {"type": "string", "description": "The name or label of the object in the specified bounding box"},
                "img_idx": {"type": "number", "description": "The index of the zoomed-in image (starting from 0)"},
            },
            "required": ["bbox_2d", "label", "img_idx"],
        },
    },
}
_REQUIRED = ("bbox_2d", "label", "img_idx")

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


class ToolCallError(ValueError):
    """A tool call that cannot be executed; ``kind`` says how it is counted.

    ``malformed``: not understandable as a zoom request (bad JSON, wrong tool name, missing or mistyped fields).
    ``out_of_range``: well formed, but names no region of an existing image (coordinates outside 0-1000, an empty
    or inverted box, an ``img_idx`` beyond the images seen so far).
    """

    def __init__(self, kind: Literal["malformed", "out_of_range"], message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ZoomRequest:
    """A validated call: a box in 0-1000 coordinates of image ``img_idx``."""

    bbox_2d: tuple[float, float, float, float]
    label: str
    img_idx: int


# -- reading calls out of a reply --------------------------------------------------------------------------
def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_call_json(body: str) -> dict[str, Any]:
    """The call object inside one ``<tool_call>`` block; raises :class:`ToolCallError` ("malformed").

    Strict JSON first. Then only unambiguous repairs: a Markdown code fence around it, text after one complete
    object (when that text holds no other ``{``), or a Python literal with single quotes.

    >>> parse_call_json('{"name": "image_zoom_in_tool", "arguments": {"img_idx": 0}}')["arguments"]
    {'img_idx': 0}
    >>> parse_call_json("{'name': 'image_zoom_in_tool', 'arguments': {'img_idx': 1}}")["arguments"]
    {'img_idx': 1}
    >>> parse_call_json('{"name": "t", "arguments": {}}} (then I will answer)')["name"]
    't'
    >>> try:
    ...     parse_call_json('{"name": "a", "arguments": {}} {"name": "b", "arguments": {}}')
    ... except ToolCallError as exc:
    ...     print(exc.kind)
    malformed
    """
    text = body.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if len(text) > _MAX_CALL_CHARS:
        raise ToolCallError("malformed", f"tool call is {len(text)} characters long; not a zoom call")
    obj: Any = None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        try:
            obj, end = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
            if "{" in text[end:]:  # a second object: which one was meant is a guess
                obj = None
        except ValueError:
            obj = None
        if obj is None and text.startswith("{"):
            try:
                obj = ast.literal_eval(text)
                json.dumps(obj, allow_nan=False)  # sets, bytes, NaN... are not JSON: refuse them
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                obj = None
    if not isinstance(obj, dict):
        raise ToolCallError("malformed", f"tool call is not valid JSON: {text[:200]!r}")
    if isinstance(obj.get("arguments"), str):  # OpenAI style: arguments as a JSON string
        try:
            obj = {**obj, "arguments": json.loads(obj["arguments"], parse_constant=_reject_constant)}
        except ValueError:
            raise ToolCallError("malformed", f"tool call arguments are not valid JSON: {obj['arguments'][:200]!r}") from None
    return obj


def extract_tool_calls(text: str) -> list[tuple[str, dict[str, Any] | ToolCallError]]:
    """Every ``<tool_call>`` block after any thinking, in order: ``(raw body, parsed call or the error)``.

    >>> calls = extract_tool_calls('Look.<tool_call>{"name": "x", "arguments": {}}</tool_call><tool_call>{oops')
    >>> [(raw, type(parsed).__name__) for raw, parsed in calls]
    [('{"name": "x", "arguments": {}}', 'dict'), ('{oops', 'ToolCallError')]
    >>> extract_tool_calls("<think><tool_call>{}</tool_call></think>The answer is B.")
    []
    """
    _, rest = split_thinking(text)
    out: list[tuple[str, dict[str, Any] | ToolCallError]] = []
    # Blocks end at their closing tag, at the next opening tag or at the end of the text (a reply cut by
    # max_tokens or by a `</tool_call>` stop string): reply_format's scanner.
    for block in tool_call_blocks(rest):
        raw = block.body
        try:
            out.append((raw, parse_call_json(raw)))
        except ToolCallError as exc:
            out.append((raw, exc))
    return out


def clean_answer(text: str) -> str:
    """A reply's answer: thinking and ``<tool_call>`` blocks removed, whitespace trimmed.

    >>> clean_answer('<think>small text</think>It says STOP.\\n<tool_call>{"name": "x"}</tool_call>')
    'It says STOP.'
    """
    _, rest = split_thinking(text)
    return strip_tool_calls(rest).strip()


def format_tool_call(name: str, arguments: Any) -> str:
    """A call in Qwen's wire format, as its chat template renders an assistant ``tool_calls`` entry.

    >>> format_tool_call("image_zoom_in_tool", {"img_idx": 0})
    '<tool_call>\\n{"name": "image_zoom_in_tool", "arguments": {"img_idx": 0}}\\n</tool_call>'
    """
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return f'<tool_call>\n{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": {args}}}\n</tool_call>'


# -- validation ----------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_zoom_call(call: dict[str, Any], n_images: int) -> ZoomRequest:
    """Check a parsed call against the tool's schema and the images seen so far (``n_images``).

    >>> validate_zoom_call({"name": ZOOM_TOOL_NAME, "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "sign",
    ...                     "img_idx": 1.0}}, n_images=2)
    ZoomRequest(bbox_2d=(0.0, 0.0, 500.0, 500.0), label='sign', img_idx=1)
    >>> try:
    ...     validate_zoom_call({"name": ZOOM_TOOL_NAME, "arguments": {"bbox_2d": [0, 0, 500, 500], "label": "sign",
    ...                         "img_idx": 2}}, n_images=2)
    ... except ToolCallError as exc:
    ...     print(exc.kind, "|", exc)
    out_of_range | img_idx 2 does not exist: images 0-1 have been shown
    """
    name = call.get("name")
    if name != ZOOM_TOOL_NAME:
        raise ToolCallError("malformed", f"unknown tool {name!r}; the only tool is {ZOOM_TOOL_NAME}")
    args = call.get("arguments")
    if not isinstance(args, dict):
        raise ToolCallError("malformed", "tool call has no arguments object")
    missing = [key for key in _REQUIRED if key not in args]
    if missing:
        raise ToolCallError("malformed", f"missing required argument(s): {', '.join(missing)}")
    bbox, label, img_idx = args["bbox_2d"], args["label"], args["img_idx"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ToolCallError("malformed", f"bbox_2d must be 4 numbers [x1, y1, x2, y2]; got {bbox!r}"[:300])
    if not isinstance(label, str):
        raise ToolCallError("malformed", f"label must be a string; got {label!r}"[:300])
    if not _is_number(img_idx) or not float(img_idx).is_integer():
        raise ToolCallError("malformed", f"img_idx must be an integer; got {img_idx!r}"[:300])
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if min(x1, y1, x2, y2) < 0 or max(x1, y1, x2, y2) > _COORD_MAX:
        raise ToolCallError("out_of_range", f"bbox_2d must lie within 0-{_COORD_MAX} (relative coordinates); got {list(bbox)}")
    if x2 <= x1 or y2 <= y1:
        raise ToolCallError("out_of_range", f"bbox_2d needs x1 < x2 and y1 < y2; got {list(bbox)}")
    idx = int(img_idx)
    if not 0 <= idx < n_images:
        raise ToolCallError("out_of_range", f"img_idx {idx} does not exist: images 0-{n_images - 1} have been shown")
    return ZoomRequest((x1, y1, x2, y2), label, idx)
