"""Examples the UI offers: ZoomWorld items generated on the fly from a seed, and items of a benchmark file.

An example is named by a key that rebuilds it: ``zoomworld:SEED:INDEX`` (ZoomWorld item ``INDEX`` depends
only on the seed and the index, at the catalog's level: ``standard``, or ``nano`` for zwz-nano, the embedded
default) or ``bench:INDEX`` (the file given with ``--benchmark``).

    catalog = ExampleCatalog(zoomworld_count=12, benchmark="ZoomBench/data/test-00000-of-00001.parquet")
    catalog.choices(seed=0)                # [(label, key), ...] for a dropdown
    item = catalog.get("zoomworld:0:3")    # a BenchItem: image, crop_image, prompt, answer, bbox, options
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from zwz.defaults import ZOOMWORLD_SIZE
from zwz.distill.benchmark import BenchItem
from zwz.distill.zoomworld import LEVELS

logger = logging.getLogger(__name__)

__all__ = ["ExampleCatalog", "describe"]

# ZoomWorld images are ZOOMWORLD_SIZE (1536x1152); the catalog keeps the items of this many seeds in memory (~64 MB for 12).
_SEEDS_KEPT = 2


@lru_cache(maxsize=_SEEDS_KEPT)
def _zoomworld(seed: int, count: int, level: str) -> tuple[BenchItem, ...]:
    from zwz.distill.zoomworld import generate_zoomworld

    logger.info("generating %d ZoomWorld %s items (seed %d)", count, level, seed)
    size = ZOOMWORLD_SIZE if level == "standard" else None  # None: the level's own canvas
    return tuple(generate_zoomworld(count, seed=seed, image_size=size, level=level))


def describe(item: BenchItem) -> str:
    """A short label: ``id · dimension · multiple choice | open``."""
    kind = "multiple choice" if item.multiple_choice else "open"
    return " · ".join(part for part in (item.id, item.dimension, kind) if part)


class ExampleCatalog:
    """ZoomWorld items (``zoomworld_count`` per seed at ``level``; 0: none) plus the items of an optional
    benchmark file."""

    def __init__(self, zoomworld_count: int = 12, benchmark: str | Path | None = None, level: str = "standard"):
        if zoomworld_count < 0:
            raise ValueError(f"zoomworld_count must be >= 0, got {zoomworld_count}")
        if level not in LEVELS:
            raise ValueError(f"ZoomWorld level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.zoomworld_count = zoomworld_count
        self.level = level
        self.benchmark: list[BenchItem] = []
        if benchmark is not None:
            from zwz.distill.benchmark import load_benchmark

            self.benchmark = load_benchmark(benchmark)
            logger.info("loaded %d benchmark items from %s", len(self.benchmark), benchmark)

    def choices(self, seed: int = 0) -> list[tuple[str, str]]:
        """``(label, key)`` pairs: the seed's ZoomWorld items, then the benchmark's."""
        out = []
        if self.zoomworld_count:
            out += [(f"ZoomWorld · {describe(item)}", f"zoomworld:{seed}:{i}")
                    for i, item in enumerate(_zoomworld(int(seed), self.zoomworld_count, self.level))]
        out += [(f"benchmark · {describe(item)}", f"bench:{i}") for i, item in enumerate(self.benchmark)]
        return out

    def get(self, key: str) -> BenchItem:
        """The item a key names; raises ``KeyError`` with a message for an unknown key."""
        kind, _, rest = key.partition(":")
        try:
            if kind == "zoomworld":
                seed, index = (int(v) for v in rest.split(":"))
                if 0 <= index < self.zoomworld_count:
                    return _zoomworld(seed, self.zoomworld_count, self.level)[index]
            elif kind == "bench":
                index = int(rest)
                if 0 <= index < len(self.benchmark):
                    return self.benchmark[index]
        except ValueError:
            pass
        raise KeyError(f"no example {key!r}")
