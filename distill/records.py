"""The typed records that flow between the R2I stages, each JSON-serialisable for the stage journals.

pool -> :class:`PoolImage`; propose/zoom -> :class:`Region`; questions/answers/validation -> :class:`QA`;
ground/multiple choice/difficulty -> :class:`Item`. Each record carries its parent, so any stage's journal
alone says where an item came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["QA", "Item", "PoolImage", "Region"]


@dataclass
class PoolImage:
    """A readable, large-enough image of the pool; ``image_id`` is its content hash."""

    image_id: str
    path: str
    width: int
    height: int
    name: str  # the file name the annotations refer to

    @property
    def key(self) -> str:
        return self.image_id

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PoolImage:
        return cls(**data)


@dataclass
class Region:
    """A proposed box B of a pool image (pixels, x2/y2 exclusive) and, after zooming, its crop file."""

    region_id: str
    image: PoolImage
    box: list[float]
    label: str
    origin: str  # native | sam3
    fraction: float  # area(B) / area(I)
    crop_path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.region_id

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Region:
        return cls(**{**data, "image": PoolImage.from_json(data["image"])})


@dataclass
class QA:
    """A generated question about a region and, after the answer stage, its consensus answer."""

    qa_id: str
    region: Region
    index: int
    question: str
    answer: str | None = None
    agreement: float | None = None  # share of the m x k answers in the majority cluster
    votes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.qa_id

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QA:
        return cls(**{**data, "region": Region.from_json(data["region"])})


@dataclass
class Item:
    """A full-image item (I', Q', A): ``image_path`` is I' as the student sees it."""

    item_id: str
    qa: QA
    image_path: str
    question: str
    answer: str
    box: list[float] | None
    variant: str
    dimension: str | None = None
    options: list[str] | None = None
    student_correct: int | None = None

    @property
    def key(self) -> str:
        return self.item_id

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(**{**data, "qa": QA.from_json(data["qa"])})
