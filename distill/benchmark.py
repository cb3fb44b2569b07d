"""The benchmark item type and the ZoomBench loader.

ZoomBench (HF ``inclusionAI/ZoomBench``) rows carry ``image``, ``crop_image``, ``prompt`` and ``answer``; in
HF parquet an image is a struct ``{"bytes": ..., "path": ...}``. Also read: JSONL with image paths relative
to the file (what :func:`zwz.distill.zoomworld.write_zoomworld` writes) and the official repo's converted
JSON (``images``/``crop_images`` lists, ``query``, ``response``).

    items = load_benchmark("ZoomBench/data/test-00000-of-00001.parquet")   # or a folder, or items.jsonl
    items[0].load_image(), items[0].options, items[0].answer
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from zwz.scoring import extract_options

logger = logging.getLogger(__name__)

__all__ = ["BenchItem", "ImageSource", "canonical_dimension", "load_benchmark"]

# An image kept as decoded pixels, as a file path (opened on demand) or as encoded bytes (decoded on demand):
# 845 full-resolution ZoomBench images decoded at once would take gigabytes.
ImageSource = Image.Image | Path | bytes

DIMENSIONS = ("counting", "ocr", "color", "structure", "material", "identification")
_DIMENSION_HINTS = (
    ("count", "counting"),
    ("ocr", "ocr"),
    ("text", "ocr"),
    ("colo", "color"),
    ("struct", "structure"),
    ("shape", "structure"),
    ("material", "material"),
    ("ident", "identification"),
)
# Canonical column -> accepted names, first found wins ("query"/"response"/"images" are the official repo's
# converted layout; "category"/"type" are common names for the dimension).
_ALIASES = {
    "prompt": ("prompt", "query", "question"),
    "answer": ("answer", "response"),
    "image": ("image", "images"),
    "crop_image": ("crop_image", "crop_images"),
    "dimension": ("dimension", "category", "type"),
}
_REQUIRED = ("image", "prompt", "answer")


def canonical_dimension(name: str | None) -> str | None:
    """Map a dimension label onto the six ZoomBench names (unknown labels are lower-cased and kept).

    >>> canonical_dimension("Fine-Grained Counting"), canonical_dimension("OCR"), canonical_dimension("Colour")
    ('counting', 'ocr', 'color')
    >>> canonical_dimension("spatial"), canonical_dimension(None)
    ('spatial', None)
    """
    if name is None or not str(name).strip():
        return None
    low = str(name).strip().lower()
    for hint, canonical in _DIMENSION_HINTS:
        if hint in low:
            return canonical
    return low


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    image.load()
    return image


@dataclass
class BenchItem:
    """One benchmark question.

    ``answer`` is the option letter for multiple-choice items, the canonical answer text otherwise.
    ``bbox`` is the evidence box (x1, y1, x2, y2) in pixels of the full image (x2, y2 exclusive, as in PIL's
    crop box), when known. ``meta`` holds
    anything else a source provides (ZoomWorld: the answer text, the crop box, the generator seed).

    >>> item = BenchItem("q1", Image.new("RGB", (8, 8)), None, "Color?\\nA. red\\nB. blue", "B",
    ...                  options=["red", "blue"], multiple_choice=True)
    >>> item.answer_text, item.load_image().size
    ('blue', (8, 8))
    """

    id: str
    image: ImageSource
    crop_image: ImageSource | None
    prompt: str
    answer: str
    dimension: str | None = None
    options: list[str] | None = None
    bbox: tuple[int, int, int, int] | None = None
    multiple_choice: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def load_image(self) -> Image.Image:
        """The full image, decoded (files and bytes are opened on each call, not kept)."""
        return _open(self.image)

    def load_crop(self) -> Image.Image | None:
        """The evidence crop, decoded, or None when the item has none."""
        return None if self.crop_image is None else _open(self.crop_image)

    @property
    def answer_text(self) -> str:
        """The answer as text: the chosen option's text for multiple choice, else ``answer``."""
        if self.multiple_choice and self.options and len(self.answer) == 1:
            index = ord(self.answer.upper()) - ord("A")
            if 0 <= index < len(self.options):
                return self.options[index]
        return self.answer


# ----------------------------------------------------------------------------------------------- reading
def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from exc
    # Batches keep peak memory near one batch of encoded images rather than one decoded table copy.
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
        yield from batch.to_pylist()


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def _read_json(path: Path) -> Iterator[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # {"data": [...]} or a single split
        data = next((v for v in data.values() if isinstance(v, list)), [data])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of items")
    yield from data


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no benchmark at {path}")
    if (path / "items.jsonl").is_file():
        return [path / "items.jsonl"]
    for pattern in ("*.parquet", "*.jsonl", "*.json"):
        found = sorted(p for p in path.rglob(pattern) if p.is_file())
        if found:
            return found
    raise FileNotFoundError(f"{path}: no items.jsonl, *.parquet, *.jsonl or *.json inside")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    raise ValueError(f"{path}: unsupported benchmark file type {suffix!r} (parquet, jsonl or json)")


def _columns(row: dict[str, Any], path: Path) -> dict[str, str]:
    """Canonical name -> the row's column name; one-line error for a missing required column."""
    mapping = {}
    for canonical, names in _ALIASES.items():
        found = next((n for n in names if n in row), None)
        if found is not None:
            mapping[canonical] = found
    missing = [c for c in _REQUIRED if c not in mapping]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(sorted(row)) or 'none'})"
        )
    return mapping


def _image_source(value: Any, base: Path) -> ImageSource | None:
    if isinstance(value, list):  # the official converted layout stores one-element lists
        value = value[0] if value else None
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):  # HF Image feature: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
        if not value:
            return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    file = Path(str(value))
    return file if file.is_absolute() else base / file


def _bbox(value: Any) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if len(value) != 4:
        raise ValueError(f"bbox must have 4 numbers, got {value!r}")
    x1, y1, x2, y2 = (int(round(float(v))) for v in value)
    return (x1, y1, x2, y2)


def _item(row: dict[str, Any], cols: dict[str, str], index: int, path: Path) -> BenchItem:
    base = path.parent
    for name in _REQUIRED:
        if row[cols[name]] is None:
            raise ValueError(f"{path}: row {index} has no {name}")
    image = _image_source(row[cols["image"]], base)
    if image is None:
        raise ValueError(f"{path}: row {index} has no image")
    prompt = str(row[cols["prompt"]])
    answer = str(row[cols["answer"]]).strip()
    options = row.get("options")
    options = [str(o) for o in options] if options else extract_options(prompt)
    multiple_choice = bool(row["multiple_choice"]) if row.get("multiple_choice") is not None else options is not None
    meta = row.get("meta") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return BenchItem(
        id=str(row["id"]) if row.get("id") is not None else str(index),
        image=image,
        crop_image=_image_source(row.get(cols.get("crop_image", "crop_image")), base),
        prompt=prompt,
        answer=answer,
        dimension=canonical_dimension(row.get(cols.get("dimension", "dimension"))),
        options=options if multiple_choice else None,
        bbox=_bbox(row.get("bbox")),
        multiple_choice=multiple_choice,
        meta=dict(meta),
    )


def load_benchmark(path: str | Path) -> list[BenchItem]:
    """Load ZoomBench-style items from a parquet, JSONL or JSON file, or a folder of them.

    Images stay encoded (bytes or paths) until :meth:`BenchItem.load_image`. Options of multiple-choice
    items come from an ``options`` column or are inferred from the prompt's ``A. ...`` lines.

    >>> load_benchmark("/nonexistent")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no benchmark at /nonexistent
    """
    path = Path(path)
    items: list[BenchItem] = []
    for file in _files(path):
        for row in _rows(file):
            items.append(_item(row, _columns(row, file), len(items), file))
    n_mc = sum(i.multiple_choice for i in items)
    logger.info("loaded %d items from %s (%d multiple choice, %d open)", len(items), path, n_mc, len(items) - n_mc)
    return items
