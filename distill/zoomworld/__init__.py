"""ZoomWorld: a seeded, procedural fine-grained benchmark with known answers and evidence boxes.

Each image is a busy canvas (colour blotches, hundreds of tiny shapes and words) with a dozen small labelled
panels. One panel holds the evidence; the question names it by its tiny label ("the panel labelled K7"), and
the other panels hold the same kinds of content, so the answer needs zoom-level reading of a region well
under 10% of the image. The six ZoomBench dimensions are covered: counting, ocr, color, structure, material,
identification. Items come with the evidence box, a crop of it (with a margin) for the dual view, and a
multiple-choice or open prompt; ``meta["panels"]`` lists every panel (box, label, dimension, question, answer,
distractors): the scene's native annotations, which ``zwz distill`` can use as box proposals. Only PIL and
numpy; the same seed gives byte-identical PNGs.

    python -c "from zwz.distill.zoomworld import write_zoomworld; write_zoomworld('zoomworld', 120, seed=0)"

Two levels: ``level="standard"`` (the default, above) and ``level="nano"`` (one framed panel with big, coarse
content on a 448x448 canvas, for models trained from scratch on a CPU; see ``nano``).

Modules: ``assets`` (vocabulary, seeded picks), ``drawing`` (primitives), ``panels`` (one content kind per
dimension), ``scene`` (the canvas, items, writing), ``nano`` (the nano level).
"""

from zwz.distill.benchmark import DIMENSIONS
from zwz.distill.zoomworld.scene import (
    CROP_MARGIN,
    DEFAULT_IMAGE_SIZE,
    LEVELS,
    MAX_BOX_FRACTION,
    MC_SUFFIX,
    MIN_SIDE,
    OPEN_SUFFIX,
    expand_box,
    generate_zoomworld,
    iter_zoomworld,
    write_zoomworld,
)
from zwz.distill.zoomworld.nano import NANO_DIMENSIONS, NANO_IMAGE_SIZE

__all__ = [
    "CROP_MARGIN", "DEFAULT_IMAGE_SIZE", "DIMENSIONS", "LEVELS", "MAX_BOX_FRACTION", "MC_SUFFIX", "MIN_SIDE",
    "NANO_DIMENSIONS", "NANO_IMAGE_SIZE", "OPEN_SUFFIX",
    "expand_box", "generate_zoomworld", "iter_zoomworld", "write_zoomworld",
]  # fmt: skip
