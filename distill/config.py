"""The settings of one ``zwz distill`` run; every threshold defaults to the paper's value (App. 8.1).

The part of the config that changes the output is hashed (:meth:`DistillConfig.fingerprint`); a run folder
remembers it, and a rerun with a different fingerprint refuses to resume there unless told to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from zwz.distill.teachers import Endpoint
from zwz.distill.training_data import VARIANTS

__all__ = ["DistillConfig"]

# Settings that only change speed or logging, not records: excluded from the resume fingerprint.
_RUNTIME_ONLY = {"concurrency", "timeout", "max_retries", "retry_backoff", "backend", "ray_actors", "progress"}


def _endpoint(value: Endpoint | dict[str, Any] | str) -> Endpoint:
    if isinstance(value, Endpoint):
        return value
    if isinstance(value, dict):
        return Endpoint(**value)
    return Endpoint.parse(str(value))


@dataclass
class DistillConfig:
    """All settings of a run. ``teachers`` answer, ``question_teacher`` asks, ``student`` filters."""

    images: str
    teachers: list[Endpoint]
    question_teacher: Endpoint
    student: Endpoint | None = None
    annotations: str | None = None  # COCO JSON or a ZoomWorld items.jsonl: native boxes
    sam3_model: str | None = None  # a local facebook/sam3 folder: boxes from an inventory + SAM3
    benchmark: bool = False
    variant: str = "bbox_in_image"
    multiple_choice: bool = False
    validate: bool = False
    equivalence_judge: Endpoint | None = None
    min_side: int = 800  # paper: "mostly over 800 x 800" (official code: > 1200 per side)
    tau: float = 0.1  # area(B) / area(I) < tau
    max_boxes: int = 0  # regions kept per image, smallest first (0: all, as in the paper)
    zoom: float = 2.0  # crop upscale, LANCZOS
    questions_per_crop: int = 3  # K
    samples_per_teacher: int = 4  # k; m = len(teachers)
    answer_temperature: float = 0.7
    consensus: float = 0.875  # paper: majority > 6/8, i.e. >= 7/8 (the official code keeps >= 0.75)
    box_expand: float = 0.05  # per side
    box_width: int = 5  # px at full resolution
    sam3_threshold: float = 0.75
    student_samples: int = 4
    student_temperature: float = 1.0
    max_student_correct: int = 1  # drop when right >= 2 of 4
    seed: int = 0
    max_tokens: int = 512
    api_key_env: str | None = None
    # runtime-only
    concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    backend: str = "local"
    ray_actors: int = 2
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.teachers:
            raise ValueError("at least one --teacher URL=MODEL is needed")
        if self.variant not in VARIANTS:
            raise ValueError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        checks = [
            (0 < self.tau <= 1, "--tau must be in (0, 1]"),
            (0 < self.consensus <= 1, "--consensus must be in (0, 1]"),
            (self.zoom >= 1, "--zoom must be >= 1"),
            (self.questions_per_crop >= 1, "--questions must be >= 1"),
            (self.samples_per_teacher >= 1, "--samples must be >= 1"),
            (self.student_samples >= 1, "--student-samples must be >= 1"),
            (0 <= self.box_expand < 1, "--box-expand must be in [0, 1)"),
            (self.box_width >= 1, "--box-width must be >= 1"),
            (self.min_side >= 1, "--min-side must be >= 1"),
            (self.max_boxes >= 0, "--max-boxes must be >= 0"),
            (self.backend in ("local", "ray"), "--backend must be local or ray"),
            (self.annotations is not None or self.sam3_model is not None,
             "boxes need --annotations (COCO JSON / ZoomWorld items.jsonl) or --sam3-model DIR"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def answers_per_question(self) -> int:
        return len(self.teachers) * self.samples_per_teacher

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["teachers"] = [_endpoint(t) for t in data.get("teachers") or []]
        if not data["teachers"] or not data.get("images"):
            raise ValueError("a config needs 'images' and at least one teacher ('teachers': [\"URL=MODEL\"])")
        for name in ("question_teacher", "student", "equivalence_judge"):
            if data.get(name) is not None:
                data[name] = _endpoint(data[name])
        if data.get("question_teacher") is None and data["teachers"]:
            data["question_teacher"] = data["teachers"][0]
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> dict[str, Any]:
        """A config file (JSON) as a dict of settings; the CLI lays its flags over it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of settings")
        return data

    def fingerprint(self) -> str:
        """Hash of everything that changes the records (runtime-only settings left out)."""
        data = {k: v for k, v in self.to_dict().items() if k not in _RUNTIME_ONLY}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
