"""The paper's box proposer P(I) with SAM3: one text prompt per inventoried object, a box kept only when SAM3
finds exactly one instance (score > 0.5, what SAM3's own predictor reports) and that instance scores >= 0.75
(paper App. 8.1; the official ``create_crops.py`` keeps single-instance objects, ``create_questions.py`` then
drops scores under 0.75). ``instance_threshold=0.75`` gives the looser reading "exactly one above 0.75".

Public API (what the distillation pipeline calls):

    proposer = Sam3BoxProposer("/models/sam3", device="cuda")          # bf16 on GPU, fp32 on CPU
    results = proposer.propose(image, ["red car", "street sign"])      # list[ObjectBox], one per name
    boxes = [r.box for r in results if r.kept]                         # (x1, y1, x2, y2) pixels of `image`

    propose_boxes_sam3(image, names, model_dir, score_threshold=0.75)  # the same through a cached proposer
    Sam3BoxProposer.from_model(model, tokenizer)                       # around an already loaded Sam3Model

Every name comes back with ``reason`` = ``"kept"`` or why it was dropped (``no_instance``,
``multiple_instances``, ``low_score``, ``empty_box``, ``too_large`` when ``max_area_ratio`` is set), so a
funnel can count drops. The rule itself is the pure function :func:`select_unique_instance` over (boxes,
scores); :func:`detections_from_outputs` is transformers' ``post_process_object_detection`` math (scores =
sigmoid(logit) x sigmoid(presence), boxes scaled to original pixels), written out because that method lives
in the torchvision-only ``image_processing_sam3`` module. The paper's sparsity filter area(B)/area(I) < tau
is ``zwz.distill.imaging.box_area_fraction`` (also applied here when ``max_area_ratio`` is given).

Weights: a local ``facebook/sam3`` folder (never downloaded); tests use ``zwz.distill.sam3.tiny``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zwz.distill.imaging import box_area_fraction

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DROP_REASONS",
    "Detections",
    "ObjectBox",
    "Sam3BoxProposer",
    "detections_from_outputs",
    "propose_boxes_sam3",
    "select_unique_instance",
]

logger = logging.getLogger(__name__)

KEPT = "kept"
DROP_REASONS = ("no_instance", "multiple_instances", "low_score", "empty_box", "too_large")
# What counts as "an instance": Meta's SAM3 image predictor reports detections above 0.5 by default, and the
# official pipeline rejects an object when more than one is reported.
DEFAULT_INSTANCE_THRESHOLD = 0.5
DEFAULT_MIN_SCORE = 0.75  # the official pipeline's sam3_score cut (create_questions.py)
_PROMPT_TOKENS = 32  # Sam3Processor pads every prompt to 32 tokens (the text encoder's positions)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectBox:
    """The outcome for one object name: its box when kept, otherwise why not."""

    name: str
    reason: str  # "kept" or one of DROP_REASONS
    box: Box | None  # x1, y1, x2, y2 in pixels of the original image (the best instance, when there is one)
    score: float | None  # that instance's score
    n_instances: int  # detections above the instance threshold

    @property
    def kept(self) -> bool:
        return self.reason == KEPT

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "box": list(self.box) if self.box is not None else None}


@dataclass(frozen=True)
class Detections:
    """SAM3's detections for one prompt: boxes (N, 4) pixel xyxy and scores (N,), best first, float32 CPU."""

    boxes: torch.Tensor
    scores: torch.Tensor


def select_unique_instance(
    boxes: Any,
    scores: Any,
    *,
    instance_threshold: float = DEFAULT_INSTANCE_THRESHOLD,
    min_score: float = DEFAULT_MIN_SCORE,
    image_size: tuple[int, int] | None = None,
    max_area_ratio: float | None = None,
) -> tuple[str, Box | None, float | None, int]:
    """The one-instance rule: ``(reason, box, score, n_instances)`` for one object's detections.

    Instances are detections with score > ``instance_threshold`` (transformers' post-processing compares
    strictly); the object is kept only when there is exactly one and its score >= ``min_score``. With
    ``image_size`` (w, h) the box is clipped to the image first; with ``max_area_ratio`` too, a box with
    area(B)/area(I) >= it is dropped as ``too_large`` (the paper keeps area ratio < tau = 0.1).

    >>> select_unique_instance([[10, 10, 20, 20], [0, 0, 5, 5]], [0.875, 0.25])
    ('kept', (10.0, 10.0, 20.0, 20.0), 0.875, 1)
    >>> select_unique_instance([[10, 10, 20, 20], [0, 0, 5, 5]], [0.9, 0.6])[0]
    'multiple_instances'
    >>> select_unique_instance([[10, 10, 20, 20]], [0.7])[0], select_unique_instance([], [])[0]
    ('low_score', 'no_instance')
    """
    import torch

    if not 0.0 <= instance_threshold <= min_score <= 1.0:
        raise ValueError(f"need 0 <= instance_threshold ({instance_threshold}) <= min_score ({min_score}) <= 1")
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)  # (N, 4)
    scores_t = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)  # (N,)
    if boxes_t.shape[0] != scores_t.shape[0]:
        raise ValueError(f"{boxes_t.shape[0]} boxes but {scores_t.shape[0]} scores")
    instances = (scores_t > instance_threshold).nonzero().flatten()
    n = int(instances.numel())
    if n == 0:
        return "no_instance", None, None, 0
    best = int(instances[scores_t[instances].argmax()])
    box = boxes_t[best]
    if image_size is not None:
        width, height = image_size
        box = torch.stack([box[0].clamp(0, width), box[1].clamp(0, height), box[2].clamp(0, width),
                           box[3].clamp(0, height)])
    x1, y1, x2, y2 = (float(v) for v in box)
    score = float(scores_t[best])
    if n > 1:
        return "multiple_instances", (x1, y1, x2, y2), score, n
    if score < min_score:
        return "low_score", (x1, y1, x2, y2), score, n
    if x2 <= x1 or y2 <= y1:
        return "empty_box", (x1, y1, x2, y2), score, n
    if max_area_ratio is not None:
        if image_size is None:
            raise ValueError("max_area_ratio needs image_size")
        if box_area_fraction((x1, y1, x2, y2), image_size) >= max_area_ratio:
            return "too_large", (x1, y1, x2, y2), score, n
    return KEPT, (x1, y1, x2, y2), score, n


def detections_from_outputs(outputs: Any, original_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
    """Per-prompt detections from ``Sam3Model`` outputs (``pred_logits`` (B, Q), ``presence_logits`` (B, 1),
    ``pred_boxes`` (B, Q, 4) normalised xyxy); ``original_sizes`` gives each row's (height, width).

    Same math as ``Sam3ImageProcessor.post_process_object_detection`` (threshold 0: every query kept, so the
    rule can see them all), in float32 on the CPU whatever the model's dtype.
    """
    import torch

    logits = outputs.pred_logits.float()  # (B, Q)
    scores = logits.sigmoid()
    if outputs.presence_logits is not None:
        scores = scores * outputs.presence_logits.float().sigmoid()  # (B, 1) broadcast over queries
    sizes = torch.tensor([[w, h, w, h] for h, w in original_sizes], dtype=torch.float32, device=scores.device)
    boxes = outputs.pred_boxes.float() * sizes[:, None, :]  # (B, Q, 4) pixels
    result = []
    for row_scores, row_boxes in zip(scores.cpu(), boxes.cpu()):
        order = row_scores.argsort(descending=True)
        result.append(Detections(boxes=row_boxes[order], scores=row_scores[order]))
    return result


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Sam3BoxProposer:
    """SAM3 loaded once; ``propose(image, names)`` runs the image encoder once and the prompts in batches.

    ``device`` defaults to CUDA when present; ``dtype`` to bfloat16 on CUDA and float32 elsewhere.
    ``prompt_batch_size`` prompts share one forward pass (the image features are broadcast to them).
    Images go through :mod:`zwz.distill.sam3.preprocess` on every machine, GPU ones with torchvision too: it
    is bit-identical to ``Sam3ImageProcessor`` (tested against it), so one path serves both.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        instance_threshold: float = DEFAULT_INSTANCE_THRESHOLD,
        min_score: float = DEFAULT_MIN_SCORE,
        max_area_ratio: float | None = None,
        prompt_batch_size: int = 16,
    ) -> None:
        import torch
        from transformers import AutoTokenizer, Sam3Model

        from zwz.distill.sam3.preprocess import Sam3ImageSettings

        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a SAM3 model folder (no config.json); give a local copy of "
                                    "facebook/sam3")
        torch_device = torch.device(device or _default_device())
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        dtype = dtype or (torch.bfloat16 if torch_device.type == "cuda" else torch.float32)
        self._setup(Sam3Model.from_pretrained(folder, dtype=dtype).to(torch_device), AutoTokenizer.from_pretrained(
            folder), Sam3ImageSettings.from_pretrained(folder), instance_threshold, min_score, max_area_ratio,
            prompt_batch_size)
        logger.info("SAM3 from %s on %s (%s), %dx%d input", folder, self.device, self.dtype, self.settings.height,
                    self.settings.width)

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        settings: Any = None,
        *,
        instance_threshold: float = DEFAULT_INSTANCE_THRESHOLD,
        min_score: float = DEFAULT_MIN_SCORE,
        max_area_ratio: float | None = None,
        prompt_batch_size: int = 16,
    ) -> Sam3BoxProposer:
        """A proposer around an already loaded ``Sam3Model`` (on its device and dtype) and tokenizer;
        ``settings`` default to SAM3's, at the model's input size."""
        from zwz.distill.sam3.preprocess import Sam3ImageSettings

        size = model.config.vision_config.image_size
        self = cls.__new__(cls)
        self._setup(model, tokenizer, settings or Sam3ImageSettings(height=size, width=size), instance_threshold,
                    min_score, max_area_ratio, prompt_batch_size)
        return self

    def _setup(self, model: Any, tokenizer: Any, settings: Any, instance_threshold: float, min_score: float,
               max_area_ratio: float | None, prompt_batch_size: int) -> None:
        if prompt_batch_size < 1:
            raise ValueError("prompt_batch_size must be at least 1")
        select_unique_instance([], [], instance_threshold=instance_threshold, min_score=min_score)  # validates
        self.model, self.tokenizer, self.settings = model.eval(), tokenizer, settings
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.instance_threshold, self.min_score = instance_threshold, min_score
        self.max_area_ratio, self.prompt_batch_size = max_area_ratio, prompt_batch_size
        # One call at a time: pipelines call from worker threads, fast tokenizers refuse concurrent use
        # ("Already borrowed"), and parallel forwards only fight over the same cores or GPU.
        self._lock = threading.Lock()

    def _pixels(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        from zwz.distill.sam3.preprocess import preprocess_images

        pixels, sizes = preprocess_images([image], self.settings)  # (1, 3, H, W) float32, CPU
        return pixels.to(self.device, self.dtype), sizes[0]

    def _text(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        # Sam3Processor's text side: pad to 32 tokens; truncation added so an over-long name cannot overflow
        # the text encoder's 32 positions.
        encoded = self.tokenizer(list(names), padding="max_length", max_length=_PROMPT_TOKENS, truncation=True,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"].to(self.device),
                "attention_mask": encoded["attention_mask"].to(self.device)}

    def detect(self, image: Image.Image, names: Sequence[str]) -> list[Detections]:
        """SAM3's detections for each name on ``image`` (all queries, best first, pixel xyxy)."""
        import torch

        if not names:
            return []
        out: list[Detections] = []
        with self._lock, torch.inference_mode():
            pixels, size = self._pixels(image)
            vision = self.model.get_vision_features(pixel_values=pixels)
            for start in range(0, len(names), self.prompt_batch_size):
                chunk = names[start:start + self.prompt_batch_size]
                outputs = self.model(vision_embeds=_broadcast(vision, len(chunk)), **self._text(chunk))
                out.extend(detections_from_outputs(outputs, [size] * len(chunk)))
        return out

    def propose(
        self,
        image: Image.Image,
        names: Sequence[str],
        *,
        min_score: float | None = None,
        instance_threshold: float | None = None,
        max_area_ratio: float | None = None,
    ) -> list[ObjectBox]:
        """One :class:`ObjectBox` per name, in order (a repeated name is run once); the keyword arguments
        override the proposer's thresholds for this call."""
        min_score = self.min_score if min_score is None else min_score
        instance_threshold = self.instance_threshold if instance_threshold is None else instance_threshold
        max_area_ratio = self.max_area_ratio if max_area_ratio is None else max_area_ratio
        unique = list(dict.fromkeys(names))
        detections = dict(zip(unique, self.detect(image, unique)))
        results = []
        for name in names:
            found = detections[name]
            reason, box, score, n = select_unique_instance(
                found.boxes, found.scores, instance_threshold=instance_threshold, min_score=min_score,
                image_size=image.size, max_area_ratio=max_area_ratio)
            results.append(ObjectBox(name=name, reason=reason, box=box, score=score, n_instances=n))
        return results


def _broadcast(vision: Any, batch: int) -> Any:
    """The image encoder's output for one image, viewed as ``batch`` copies (no memory copied)."""
    fields = {}
    for key, value in vision.items():
        if isinstance(value, tuple):
            fields[key] = tuple(t.expand(batch, *t.shape[1:]) for t in value)
        elif hasattr(value, "expand"):
            fields[key] = value.expand(batch, *value.shape[1:])
        else:
            fields[key] = value
    return type(vision)(**fields)


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _load_proposer(model_dir: str, device: str | None, dtype: str | None) -> Sam3BoxProposer:
    return Sam3BoxProposer(model_dir, device=device, dtype=dtype)


def _cached_proposer(model_dir: str, device: str | None, dtype: str | None) -> Sam3BoxProposer:
    with _LOAD_LOCK:  # threads asking at once must not load the weights twice
        return _load_proposer(model_dir, device, dtype)


def propose_boxes_sam3(
    image: Image.Image,
    object_names: Sequence[str],
    model_dir: str | Path,
    score_threshold: float = DEFAULT_MIN_SCORE,
    *,
    instance_threshold: float = DEFAULT_INSTANCE_THRESHOLD,
    max_area_ratio: float | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> list[ObjectBox]:
    """:meth:`Sam3BoxProposer.propose` through a proposer loaded once per (model_dir, device, dtype)."""
    proposer = _cached_proposer(str(Path(model_dir).resolve()), device, dtype)
    return proposer.propose(image, object_names, min_score=score_threshold, instance_threshold=instance_threshold,
                            max_area_ratio=max_area_ratio)
