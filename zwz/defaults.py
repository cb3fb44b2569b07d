"""The names and defaults every entry point shares (API, `zwz eval`, `zwz bench`, the UI, trajectories,
metrics), so one concept has one spelling and one default.

    from zwz.defaults import MODES, canonical_mode, AGENT_MAX_TURNS
    canonical_mode("attention-zoom")   # 'attention_zoom' (old CLI spelling, with a deprecation warning)
"""

from __future__ import annotations

import warnings

__all__ = [
    "AGENT_FIXED_TURNS",
    "AGENT_MAX_TOKENS",
    "AGENT_MAX_TURNS",
    "ANSWER_MAX_TOKENS",
    "MODES",
    "MODE_ALIASES",
    "REQUEST_TIMEOUT_S",
    "SERVE_STARTUP_TIMEOUT_S",
    "ZOOMWORLD_SEED",
    "ZOOMWORLD_SIZE",
    "canonical_mode",
    "canonical_modes",
]

# How a question is answered. The API's words (`zwz_mode`), used everywhere:
#   single          one pass on the full image (the paper's global view)
#   regional        one pass on the evidence crop (the regional view; needs the item's crop or box)
#   agent           the tool-use zoom agent baseline ("thinking with images")
#   attention_zoom  training-free zoom: the relative-attention map picks a crop, one answer on [image, crop]
MODES: tuple[str, ...] = ("single", "regional", "agent", "attention_zoom")
# Spellings older CLIs accepted; still taken, with a deprecation warning.
MODE_ALIASES: dict[str, str] = {"global": "single", "attention-zoom": "attention_zoom"}

AGENT_MAX_TURNS = 20  # model calls per agent item at most (Qwen-Agent's limit)
AGENT_FIXED_TURNS = 0  # zoom turns forced before the agent may answer (0: the model decides)
AGENT_MAX_TOKENS = 512  # tokens per agent model call (room to think and emit a tool call)
ANSWER_MAX_TOKENS = 64  # answer tokens for single, regional and attention_zoom
REQUEST_TIMEOUT_S = 600.0  # seconds per HTTP request from zwz's clients
SERVE_STARTUP_TIMEOUT_S = 900.0  # seconds a `zwz serve` subprocess may take to get healthy (vLLM profiles first)
ZOOMWORLD_SIZE: tuple[int, int] = (1536, 1152)  # the standard ZoomWorld canvas (width, height)
ZOOMWORLD_SEED = 0


def canonical_mode(name: str) -> str:
    """The API's name for a mode given in any accepted spelling; ValueError names the valid ones.

    >>> canonical_mode("single"), canonical_mode("attention_zoom")
    ('single', 'attention_zoom')
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     canonical_mode("global")
    'single'
    >>> canonical_mode("zoom")
    Traceback (most recent call last):
    ...
    ValueError: unknown mode 'zoom'; choose from single, regional, agent, attention_zoom
    """
    if name in MODES:
        return name
    if name in MODE_ALIASES:
        new = MODE_ALIASES[name]
        warnings.warn(f"mode {name!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=2)
        return new
    raise ValueError(f"unknown mode {name!r}; choose from {', '.join(MODES)}")


def canonical_modes(names: list[str] | tuple[str, ...]) -> list[str]:
    """:func:`canonical_mode` of each name, de-duplicated in order.

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     canonical_modes(["global", "agent", "single", "attention-zoom"])
    ['single', 'agent', 'attention_zoom']
    """
    return list(dict.fromkeys(canonical_mode(name) for name in names))
