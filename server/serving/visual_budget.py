"""How many visual tokens a request's images will take, known from their headers before any pixel is decoded.

The count is the model processor's own (``image_processor.get_number_of_image_patches``: Qwen's
``smart_resize`` of the image size into the request's pixel budget, divided by the 2x2 merge), so a request
whose images alone overflow the context is refused before decoding and processing them, with the same
``context_length_exceeded`` the engine would give afterwards (``max_pixels=10**12`` on an 8000x8000 photo took
10 s and 0.8 GB to reach that answer).

    budget = VisualBudget.for_model(engine.info)           # once per service; None: no processor folder
    load_image(url, policy, admit_for(budget, min_pixels, max_pixels))   # per request
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zwz.server.engines.base import EngineInfo, InvalidRequestError
from zwz.server.engines.request_policy import pixel_budget

__all__ = ["RequestVisualTokens", "VisualBudget", "admit_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VisualBudget:
    """The served model's image processor and context length."""

    image_processor: Any
    max_model_len: int

    @staticmethod
    def for_model(info: EngineInfo) -> VisualBudget | None:
        """The budget of the model folder an engine serves; None where the folder has no processor config
        (a model-free test engine), and then only the header checks that need no processor apply."""
        processor = _image_processor(info.model_dir)
        return None if processor is None else VisualBudget(processor, info.max_model_len)

    def request(self, min_pixels: int | None, max_pixels: int | None) -> RequestVisualTokens:
        """A counter for one request's images; an invalid pixel budget is refused here, as the engine would."""
        size = pixel_budget(self.image_processor, min_pixels, max_pixels)
        return RequestVisualTokens(self, size["shortest_edge"], size["longest_edge"])


@dataclass
class RequestVisualTokens:
    """The visual tokens of one request's images so far; ``admit`` refuses the image that overflows the context."""

    budget: VisualBudget
    min_pixels: int
    max_pixels: int
    tokens: int = 0

    def admit(self, size: tuple[int, int]) -> None:
        """Count an image of ``size`` (width, height), or raise the 400 the engine would give for the prompt."""
        width, height = size
        processor = self.budget.image_processor
        patches = processor.get_number_of_image_patches(
            height, width, {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels})
        self.tokens += patches // processor.merge_size ** 2
        if self.tokens >= self.budget.max_model_len:
            raise InvalidRequestError(
                f"the images take {self.tokens} visual tokens at this pixel budget (max_pixels "
                f"{self.max_pixels}), over this model's context of {self.budget.max_model_len}; send a smaller "
                "image (max_pixels) or fewer images",
                param="messages",
                code="context_length_exceeded",
            )


def admit_for(budget: VisualBudget | None, min_pixels: int | None,
              max_pixels: int | None) -> Callable[[tuple[int, int]], None] | None:
    """One request's ``load_image(admit=...)``: None where no budget is known (only the header checks apply)."""
    return None if budget is None else budget.request(min_pixels, max_pixels).admit


@functools.lru_cache(maxsize=8)
def _image_processor(model_dir: str) -> Any | None:
    """The folder's image processor, as the engines load it (``AutoProcessor`` reads the same config)."""
    if not any((Path(model_dir) / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        logger.info("%s has no processor config: visual tokens are not estimated before decoding", model_dir)
        return None
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
