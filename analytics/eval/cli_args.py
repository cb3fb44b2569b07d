"""The command-line pieces ``zwz eval``, ``zwz bench`` and the plain-Locust file share: the endpoint, benchmark,
request-settings and judge arguments, the settings built from them, the mode names and the benchmark items.

    p = subparsers.add_parser("eval")
    add_common_arguments(p, verb="run", default_modes=("single", "regional"), agent_side="client")
    args = p.parse_args(argv)
    check_common_arguments(args)
    settings = settings_from_args(args)          # an EvalSettings
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zwz.analytics.eval.client import EvalError
from zwz.analytics.eval.runner import EvalSettings
from zwz.defaults import (AGENT_FIXED_TURNS, AGENT_MAX_TOKENS, AGENT_MAX_TURNS, ANSWER_MAX_TOKENS, MODES,
                          REQUEST_TIMEOUT_S, ZOOMWORLD_SEED, ZOOMWORLD_SIZE, canonical_modes)
from zwz.distill.benchmark import BenchItem, load_benchmark
from zwz.distill.zoomworld import LEVELS as ZOOMWORLD_LEVELS
from zwz.distill.zoomworld import NANO_IMAGE_SIZE

logger = logging.getLogger(__name__)

__all__ = ["LevelDefaultSize", "add_common_arguments", "add_settings_arguments", "check_common_arguments",
           "endpoint_url", "load_items", "parse_image_size", "parse_modes", "quiet_http_logs", "settings_from_args",
           "zoomworld_size"]

# EvalSettings field -> the flag's name without its prefix.
_SETTINGS_FLAGS = {"max_tokens": "max-tokens", "temperature": "temperature", "max_pixels": "max-pixels",
                   "agent_max_turns": "agent-max-turns", "agent_fixed_turns": "agent-fixed-turns",
                   "agent_max_tokens": "agent-max-tokens", "agent_side": "agent-side"}


def parse_image_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> (width, height).

    >>> parse_image_size("1024x768")
    (1024, 768)
    """
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


_LEVEL_SIZES = {"standard": ZOOMWORLD_SIZE, "nano": tuple(NANO_IMAGE_SIZE)}  # each ZoomWorld level's canvas


class LevelDefaultSize(tuple):
    """``--zoomworld-size``'s default: the standard canvas as parsed, replaced by the level's own canvas
    (:func:`check_common_arguments`) when ``--zoomworld-level`` names another level and no size was given."""


def zoomworld_size(args: argparse.Namespace) -> tuple[int, int]:
    """The ZoomWorld canvas of parsed arguments: ``--zoomworld-size``, else the level's default.

    >>> zoomworld_size(argparse.Namespace(zoomworld_size=LevelDefaultSize(ZOOMWORLD_SIZE), zoomworld_level="nano"))
    (448, 448)
    >>> zoomworld_size(argparse.Namespace(zoomworld_size=(640, 480), zoomworld_level="nano"))
    (640, 480)
    """
    if isinstance(args.zoomworld_size, LevelDefaultSize):
        return _LEVEL_SIZES[args.zoomworld_level]
    return tuple(args.zoomworld_size)


def parse_modes(names: list[str]) -> list[str]:
    """The API's mode names, de-duplicated in order; old spellings are taken with a logged deprecation note and
    an unknown name raises ValueError naming the valid ones (one line for the CLI).

    >>> parse_modes(["single", "agent", "single"])
    ['single', 'agent']
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        modes = canonical_modes(names)
    for warning in caught:
        logger.warning("%s", warning.message)
    return modes


def add_settings_arguments(parser, *, prefix: str = "--", agent_side: str = "client") -> None:
    """The request settings (an :class:`EvalSettings`), as ``{prefix}max-tokens`` and so on; the defaults are
    ``zwz.defaults``'. ``parser`` is an argparse parser or group (Locust's parser is argparse-compatible)."""
    flag = lambda field: prefix + _SETTINGS_FLAGS[field]  # noqa: E731
    parser.add_argument(flag("max_tokens"), type=int, default=ANSWER_MAX_TOKENS,
                        help=f"answer tokens (single, regional, attention_zoom; default {ANSWER_MAX_TOKENS})")
    parser.add_argument(flag("temperature"), type=float, default=0.0)
    parser.add_argument(flag("max_pixels"), type=int, default=None,
                        help="image pixel budget per request (mm_processor_kwargs; vLLM and zwz)")
    parser.add_argument(flag("agent_max_turns"), type=int, default=AGENT_MAX_TURNS,
                        help=f"agent: model calls at most (Qwen-Agent: {AGENT_MAX_TURNS})")
    parser.add_argument(flag("agent_fixed_turns"), type=int, default=AGENT_FIXED_TURNS,
                        help="agent: zoom this many times even when the model does not ask (timing harness)")
    parser.add_argument(flag("agent_max_tokens"), type=int, default=AGENT_MAX_TOKENS,
                        help=f"agent: tokens per model call (default {AGENT_MAX_TOKENS})")
    parser.add_argument(flag("agent_side"), choices=["client", "server"], default=agent_side,
                        help="run the agent and attention_zoom modes here (client: any endpoint for the agent) or "
                             f"inside a zwz server (server; default {agent_side})")


def settings_from_args(args: argparse.Namespace, *, prefix: str = "") -> EvalSettings:
    """The :class:`EvalSettings` of parsed arguments (``prefix``: the attribute prefix, e.g. ``zwz_``)."""
    return EvalSettings(**{field: getattr(args, prefix + field) for field in _SETTINGS_FLAGS})


def add_common_arguments(parser: argparse.ArgumentParser, *, verb: str, default_modes: tuple[str, ...],
                         agent_side: str) -> None:
    """What ``zwz eval`` and ``zwz bench`` both take: where (endpoint or ``--serve``), what (benchmark or
    ZoomWorld, modes, ``--limit``), how (request settings, judge, timeout) and the output folder."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="OpenAI-compatible endpoint (http://host:port or .../v1)")
    where.add_argument("--serve", nargs="?", const="", metavar="MODEL_DIR",
                       help=f"start `zwz serve` for the {verb} (the embedded zwz-nano without MODEL_DIR)")
    parser.add_argument("--model", help="served model name (default: the endpoint's only model)")
    parser.add_argument("--api-key", help="bearer key of the endpoint")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--benchmark", help="ZoomBench-format parquet / JSONL / JSON file or folder")
    data.add_argument("--zoomworld", type=int, metavar="N", help="generate (and cache under --out) N ZoomWorld items")
    parser.add_argument("--seed", type=int, default=ZOOMWORLD_SEED, help="ZoomWorld seed")
    parser.add_argument("--zoomworld-level", choices=ZOOMWORLD_LEVELS, default="standard",
                        help="ZoomWorld level: standard (for real models) or nano (one framed panel on a 448x448 "
                             "canvas, for models trained from scratch here; zwz.distill.zoomworld.nano)")
    parser.add_argument("--zoomworld-size", type=parse_image_size, default=LevelDefaultSize(ZOOMWORLD_SIZE),
                        metavar="WxH", help="ZoomWorld image size (default: the level's, " + ", ".join(
                            f"{w}x{h} for {level}" for level, (w, h) in _LEVEL_SIZES.items()) + ")")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items")
    parser.add_argument("--modes", nargs="+", default=list(default_modes), metavar="MODE",
                        help=f"of {', '.join(MODES)} (default: {' '.join(default_modes)}; the old spellings "
                             "global and attention-zoom are still taken)")
    parser.add_argument("--out", required=True, help="output folder")
    add_settings_arguments(parser, agent_side=agent_side)
    parser.add_argument("--judge-url", help="OpenAI-compatible endpoint of the LLM judge (App. 10 prompt)")
    parser.add_argument("--judge-model")
    parser.add_argument("--judge-api-key")
    parser.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S,
                        help=f"seconds per HTTP request (default {REQUEST_TIMEOUT_S:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--log-level", default="warning")


def check_common_arguments(args: argparse.Namespace) -> None:
    """Canonical ``args.modes``, and :class:`EvalError` (one line) for what no run can start with."""
    args.modes = parse_modes(args.modes)
    args.zoomworld_size = zoomworld_size(args)
    if bool(args.judge_url) != bool(args.judge_model):
        raise EvalError("--judge-url and --judge-model go together")
    if args.limit is not None and args.limit < 1 or args.zoomworld is not None and args.zoomworld < 1:
        raise EvalError("--limit and --zoomworld need a positive count")


@contextmanager
def endpoint_url(args: argparse.Namespace, out: Path) -> Iterator[str]:
    """``--base-url``, or the URL of the ``zwz serve`` that ``--serve`` starts for the block (log: out/server.log)."""
    if args.serve is None:
        yield args.base_url
        return
    from zwz.serve_process import serve_subprocess

    with serve_subprocess(args.serve or None, log_path=out / "server.log", api_key=args.api_key) as url:
        yield url


def quiet_http_logs() -> None:
    """No line per HTTP request (it would bury the progress bars), unless debugging."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def load_items(args: argparse.Namespace, out: Path) -> tuple[list[BenchItem], str]:
    """The benchmark items (``--limit`` applied) and a name for them; ZoomWorld is generated once under ``out``."""
    if args.zoomworld is not None:
        from zwz.distill.zoomworld import write_zoomworld

        folder, size, level = out / "zoomworld", zoomworld_size(args), args.zoomworld_level
        spec = {"n": args.zoomworld, "seed": args.seed, "size": list(size)}
        if level != "standard":  # a standard-level spec reads as it did before the levels (its cache stays valid)
            spec["level"] = level
        spec_path = folder / "spec.json"
        if not (spec_path.exists() and json.loads(spec_path.read_text()) == spec and (folder / "items.jsonl").exists()):
            logger.info("generating %d ZoomWorld items (%s level, seed %d) under %s", args.zoomworld, level,
                        args.seed, folder)
            write_zoomworld(folder, args.zoomworld, args.seed, image_size=size, level=level)
            spec_path.write_text(json.dumps(spec) + "\n")
        level_text = "" if level == "standard" else f"level={level}, "
        items = load_benchmark(folder)
        name = f"zoomworld({level_text}seed={args.seed}, size={size[0]}x{size[1]})"
    else:
        items, name = load_benchmark(args.benchmark), str(Path(args.benchmark).resolve())
    return (items[: args.limit] if args.limit is not None else items), name
