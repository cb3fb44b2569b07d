"""What a one-machine training run takes, with the paper's settings as defaults (App. 9.1).

The optimiser defaults are the paper's for real checkpoints (AdamW, lr 1e-6, weight decay 1e-2, gradient
clipping at norm 1.0); the tiny random models (``zwz make-model``) get a larger learning rate, since 1e-6
moves their weights by nothing measurable in a few CPU steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TrainOptions", "default_learning_rate"]

Method = Literal["sft", "grpo"]

# App. 9.1: GRPO/DAPO at 1e-6. The paper trains without SFT; 1e-5 is the usual full-finetune rate for SFT.
_REAL_LR = {"grpo": 1e-6, "sft": 1e-5}
_TINY_LR = {"grpo": 1e-4, "sft": 1e-3}


def default_learning_rate(method: Method, tiny: bool) -> float:
    """
    >>> default_learning_rate("grpo", tiny=False), default_learning_rate("sft", tiny=True)
    (1e-06, 0.001)
    """
    return (_TINY_LR if tiny else _REAL_LR)[method]


@dataclass
class TrainOptions:
    """One ``zwz train sft|grpo`` run. ``None`` means "the default for this model and method"."""

    method: Method
    model: str
    data: str
    output_dir: str
    max_steps: int = -1  # -1: run ``epochs`` over the data
    epochs: float = 1.0  # App. 9.1: one epoch
    batch_size: int | None = None  # per device; GRPO: completions per step (default num_generations), SFT: 1
    grad_accum: int = 1
    learning_rate: float | None = None
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"  # App. 9.1 names no schedule
    warmup_steps: float = 0  # an int: steps; a float in [0, 1): a share of all steps
    save_steps: int = 50
    save_total_limit: int | None = 3
    logging_steps: int = 1
    max_pixels: int | None = None  # per-image budget; None: the processor's own
    min_pixels: int | None = None
    seed: int = 42
    limit: int | None = None
    view: str = "global"  # a benchmark's full images, or "regional": its evidence crops (a teacher's view)
    mc_target: str = "letter"  # a benchmark's MC answers as letters, or "text": the option's text
    device: str = "auto"
    gradient_checkpointing: bool | None = None  # None: on for real models, off for the tiny ones
    progress: bool = True
    # SFT
    max_length: int | None = None  # None: never truncate (a cut through the image tokens breaks the sample)
    # GRPO / DAPO
    num_generations: int = 8  # App. 9.1: rollout group of 8
    temperature: float = 1.0  # App. 9.1
    max_completion_length: int = 512
    loss_type: str = "dapo"  # token-level loss over the group (DAPO)
    epsilon: float = 0.2
    epsilon_high: float = 0.28  # DAPO's clip-higher
    beta: float = 0.0  # no KL term (DAPO)
    use_vllm: bool = False  # TRL's colocated vLLM generation (GPU)
    length_cap: int | None = None  # reward 0 for answers this long or longer (the official code: 300)
    judge_url: str | None = None
    judge_model: str | None = None
    judge_api_key: str | None = None
    reward_fns: list[str] = field(default_factory=list)  # extra rewards, "FILE.py:NAME" (summed with zwz's)

    def __post_init__(self) -> None:
        if self.method not in ("sft", "grpo"):
            raise ValueError(f"method must be sft or grpo, got {self.method!r}")
        if self.save_steps < 1:
            raise ValueError("save_steps must be >= 1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be a positive number of steps (or -1 for epochs)")
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (GRPO's advantages need a group)")
        if (self.min_pixels is not None and self.max_pixels is not None) and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")
        if self.view not in ("global", "regional"):
            raise ValueError(f"view must be global or regional, got {self.view!r}")
        if self.mc_target not in ("letter", "text"):
            raise ValueError(f"mc_target must be letter or text, got {self.mc_target!r}")
        if bool(self.judge_url) != bool(self.judge_model):
            raise ValueError("--judge-url and --judge-model go together")
