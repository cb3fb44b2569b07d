"""Reading the UI's form into a :class:`~zwz.ui.views.Query`: the image (an example's or an upload), the question,
the evidence box, the reference answer and the run settings. Problems become :class:`InputError` messages.

    query = build_query(catalog, upload_path(payload), "zoomworld:0:3", question, "10,20,110,80", "B", RunSettings())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from zwz.ui.examples import ExampleCatalog
from zwz.ui.views import Query, RunSettings, parse_box

__all__ = ["InputError", "build_query", "read_settings", "upload_path"]


class InputError(ValueError):
    """The form cannot be run as it is; the message says what to fix."""



def upload_path(payload: Any) -> str | None:
    """The file path of an image input, from its preprocessed value (a path) or its raw ``FileData`` payload.

    Events that read the image skip Gradio's preprocessing, which would fail with an opaque error on a file that
    is not an image; this app opens it itself and says what is wrong.
    """
    if isinstance(payload, dict):
        return payload.get("path")
    return payload or None


def _open_upload(path: str | None) -> tuple[Image.Image, bytes]:
    if not path:
        raise InputError("Upload an image or pick an example first.")
    try:
        data = Path(path).read_bytes()
        image = Image.open(path)
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"The image could not be read ({type(exc).__name__}: {exc}). "
                         "Upload a PNG, JPEG or WebP.") from None
    upright = ImageOps.exif_transpose(image)  # as the browser shows it
    if upright is not image:
        return upright.convert("RGB"), b""  # re-encoded, since the file's pixels are not upright
    return image.convert("RGB") if image.mode not in ("RGB", "L") else image, data


def build_query(catalog: ExampleCatalog, image_path: str | None, example_key: str | None, question: str,
                box_text: str, reference: str, settings: RunSettings) -> Query:
    """The :class:`Query` the form describes; raises :class:`InputError` for what the user must fix."""
    from zwz.scoring import extract_options

    if not question or not question.strip():
        raise InputError("Type a question first.")
    item = None
    if example_key:
        try:
            item = catalog.get(example_key)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
        image, data = item.load_image().convert("RGB"), None
    else:
        image, data = _open_upload(image_path)
    try:
        box = parse_box(box_text, image.size)
    except ValueError as exc:
        raise InputError(f"{exc}.") from None
    crop, note = None, "the evidence box"
    if item is not None and item.crop_image is not None and (box is None or box == item.bbox):
        crop, note = item.load_crop(), "the example's crop"
    options = item.options if item is not None and item.options else extract_options(question)
    return Query(image, question.strip(), box=box, crop=crop, crop_note=note,
                 reference=(reference or "").strip() or None,
                 options=options, image_bytes=data or None, settings=settings)


def read_settings(max_tokens: Any, agent_turns: Any, fixed_turns: Any, layer: Any, max_pixels: Any) -> RunSettings:
    def whole(value: Any, default: int | None) -> int | None:
        return default if value in (None, "") else int(value)

    d = RunSettings()  # blank fields take the defaults (zwz.defaults)
    return RunSettings(max_tokens=whole(max_tokens, d.max_tokens), agent_max_turns=whole(agent_turns, d.agent_max_turns),
                       agent_fixed_turns=whole(fixed_turns, d.agent_fixed_turns), layer=whole(layer, None),
                       max_pixels=whole(max_pixels, 0) or None)
