"""The ``image_zoom_in_tool`` of Qwen3-VL's "think with images" agent: its schema, reading calls out of a
reply, validating them, and cutting the crop.

Definitions follow Qwen-Agent's ``image_zoom_in_tool`` (``qwen_agent/tools/image_zoom_in_qwen3vl.py``) and the
Qwen3-VL cookbook ``think_with_images.ipynb``: the name, the description and the three required parameters
are theirs word for word, because the model was trained on that wording; ``bbox_2d`` is in Qwen3-VL's 0-1000
relative coordinates and ``img_idx`` counts every image seen so far (the originals, then each crop in order).

Crop rule, as Qwen-Agent's: the box is mapped to the chosen image's pixels; when a side is under 32 px both
sides are scaled by ``32 / shorter side`` around the box centre (the aspect ratio is kept). Where Qwen-Agent
clips the grown box at the image border and falls back to the small box if clipping left a side under 32, this
module slides the grown box back inside the image, so a crop is always at least 32 px (or the whole side of a
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
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from zwz.reply_format import split_thinking, strip_tool_calls, tool_call_blocks

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_CROP_SIDE",
    "QWEN_AGENT_CROP_MIN_PIXELS",
    "ZOOM_TOOL",
    "ZOOM_TOOL_NAME",
    "ToolCallError",
    "ZoomRequest",
    "bbox_to_pixels",
    "clean_answer",
    "crop_box",
    "crop_image",
    "extract_tool_calls",
    "format_tool_call",
    "grow_box",
    "parse_call_json",
    "split_thinking",
    "validate_zoom_call",
]

ZOOM_TOOL_NAME = "image_zoom_in_tool"
MIN_CROP_SIDE = 32  # Qwen-Agent's floor on a crop side, in pixels
# Told to the model when a training-free zoom adds the crop as a second image (attention-zoom mode).
ZOOMED_VIEW_NOTE = "The last image is a zoomed-in view of the region of the first image that matters most."
QWEN_AGENT_CROP_MIN_PIXELS = 256 * 32 * 32  # Qwen-Agent upsamples each crop to at least this many pixels
_COORD_MAX = 1000  # Qwen3-VL grounds boxes in 0-1000 relative coordinates
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


# -- cropping ------------------------------------------------------------------------------------------------
def bbox_to_pixels(bbox: tuple[float, float, float, float] | list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """0-1000 relative box -> ``(left, top, right, bottom)`` pixels, rounded outward so it covers the region.

    >>> bbox_to_pixels([250, 250, 750, 750], (400, 200))
    (100, 50, 300, 150)
    >>> bbox_to_pixels([0, 0, 1, 1], (640, 480))
    (0, 0, 1, 1)
    """
    width, height = size
    x1, y1, x2, y2 = (float(v) / _COORD_MAX for v in bbox)
    left, top = math.floor(x1 * width), math.floor(y1 * height)
    right, bottom = math.ceil(x2 * width), math.ceil(y2 * height)
    left, top = min(max(left, 0), width - 1), min(max(top, 0), height - 1)
    return left, top, min(max(right, left + 1), width), min(max(bottom, top + 1), height)


def _fit(start: float, length: int, limit: int) -> int:
    """Slide a span of ``length`` starting near ``start`` so it lies inside ``[0, limit]``."""
    return min(max(round(start), 0), limit - length)


def grow_box(box: tuple[int, int, int, int], size: tuple[int, int], min_side: int = MIN_CROP_SIDE) -> tuple[int, int, int, int]:
    """Scale a box with a side under ``min_side`` by ``min_side / shorter side`` around its centre, kept inside
    the image (a side never exceeds the image's).

    >>> grow_box((100, 100, 110, 105), (640, 480))   # 10 x 5 -> 64 x 32, same centre
    (73, 86, 137, 118)
    >>> grow_box((0, 470, 8, 480), (640, 480))       # at a corner: slid inside, not clipped
    (0, 440, 32, 480)
    >>> grow_box((5, 5, 60, 40), (640, 480))         # both sides already >= 32
    (5, 5, 60, 40)
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if min(width, height) >= min_side:
        return box
    scale = min_side / min(width, height)
    # The epsilon keeps float noise (10 * 6.4 = 64.000...01) from adding a pixel.
    new_w = min(size[0], math.ceil(width * scale - 1e-9))
    new_h = min(size[1], math.ceil(height * scale - 1e-9))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    new_left, new_top = _fit(cx - new_w / 2, new_w, size[0]), _fit(cy - new_h / 2, new_h, size[1])
    return new_left, new_top, new_left + new_w, new_top + new_h


def crop_box(bbox: tuple[float, float, float, float] | list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixel box a zoom on an image of ``size`` cuts: :func:`bbox_to_pixels` then :func:`grow_box`.

    >>> crop_box([500, 500, 505, 505], (1000, 800))   # 5 x 4 px -> 40 x 32 px
    (482, 386, 522, 418)
    """
    return grow_box(bbox_to_pixels(bbox, size), size)


def crop_image(image: Image.Image, box: tuple[int, int, int, int], *, min_pixels: int | None = None,
               max_pixels: int | None = None) -> Image.Image:
    """Cut ``box`` out of ``image``; optionally rescale (aspect kept, bicubic) into ``[min_pixels, max_pixels]``."""
    crop = image.crop(box)
    area = crop.width * crop.height
    scale = 1.0
    if min_pixels is not None and area < min_pixels:
        scale = math.sqrt(min_pixels / area)
    elif max_pixels is not None and area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    if scale != 1.0:
        new_size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        crop = crop.resize(new_size, Image.Resampling.BICUBIC)
    return crop
