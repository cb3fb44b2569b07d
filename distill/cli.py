"""``zwz distill``: Region-to-Image Distillation (paper Alg. 2) from an image pool to training data or a benchmark.

    zwz distill --images pool/ --annotations pool/items.jsonl \\
        --teacher http://127.0.0.1:8001=qwen3-vl-235b --teacher http://127.0.0.1:8002=glm-4.5v \\
        --question-teacher http://127.0.0.1:8001=qwen3-vl-235b --student http://127.0.0.1:8003=qwen3-vl-8b \\
        --out runs/r2i [--benchmark] [--multiple-choice] [--backend local|ray] [--config run.json]

Rerun the same command to resume after an interruption; ``--restart`` starts over, ``--force`` resumes a
folder whose config changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from zwz.distill.config import DistillConfig
from zwz.distill.teachers import Endpoint
from zwz.distill.training_data import VARIANTS

logger = logging.getLogger(__name__)

__all__ = ["register"]

# flag -> (config field, type, help); defaults come from DistillConfig (the paper's values).
_NUMBERS = {
    "--min-side": ("min_side", int, "keep images whose shorter side reaches this (paper: mostly >= 800)"),
    "--tau": ("tau", float, "keep boxes with area(B)/area(I) < tau"),
    "--max-boxes": ("max_boxes", int, "regions per image, smallest first (0: all)"),
    "--zoom": ("zoom", float, "crop upscale factor (LANCZOS)"),
    "--questions": ("questions_per_crop", int, "questions per crop, K"),
    "--samples": ("samples_per_teacher", int, "answers per teacher, k"),
    "--answer-temperature": ("answer_temperature", float, "teacher sampling temperature"),
    "--consensus": ("consensus", float, "majority share needed (paper > 6/8; official code 0.75)"),
    "--box-expand": ("box_expand", float, "box growth per side before drawing"),
    "--box-width": ("box_width", int, "red box line width, px at full resolution"),
    "--sam3-threshold": ("sam3_threshold", float, "SAM3 score needed"),
    "--student-samples": ("student_samples", int, "student answers per item"),
    "--student-temperature": ("student_temperature", float, "student sampling temperature"),
    "--max-student-correct": ("max_student_correct", int, "drop items the student gets right more often"),
    "--seed": ("seed", int, "sampling seed sent to the teachers and used for option shuffles"),
    "--max-tokens": ("max_tokens", int, "max tokens per teacher reply"),
    "--concurrency": ("concurrency", int, "teacher calls in flight per endpoint"),
    "--timeout": ("timeout", float, "seconds per teacher call"),
    "--max-retries": ("max_retries", int, "retries on transport errors, 429 and 5xx"),
    "--ray-actors": ("ray_actors", int, "teacher-client actors per stage with --backend ray"),
}


def register(subparsers: Any) -> None:
    defaults = DistillConfig.__dataclass_fields__
    p = subparsers.add_parser("distill", help="make R2I training data or a benchmark from an image pool",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--images", help="image folder, or a manifest (JSONL with 'image', or one path per line)")
    p.add_argument("--annotations", help="native boxes: COCO JSON or a ZoomWorld items.jsonl")
    p.add_argument("--sam3-model", help="local SAM3 folder (facebook/sam3): boxes from an inventory + SAM3")
    p.add_argument("--teacher", action="append", default=None, metavar="URL=MODEL", help="answer teacher (repeat)")
    p.add_argument("--question-teacher", metavar="URL=MODEL", help="question generator (default: first teacher)")
    p.add_argument("--student", metavar="URL=MODEL", help="student for the difficulty filter (off without it)")
    p.add_argument("--judge", metavar="URL=MODEL", help="LLM judge for answer equivalence and student scoring")
    p.add_argument("--api-key-env", help="NAME of the environment variable holding the endpoints' API key")
    p.add_argument("--out", help="run folder (resumable)")
    p.add_argument("--config", help="JSON file of settings (config field names); flags override it")
    p.add_argument("--benchmark", action="store_true", default=None, help="write a ZoomBench-format benchmark")
    p.add_argument("--variant", choices=VARIANTS, help="grounding variant (paper Table 6); default bbox_in_image")
    p.add_argument("--multiple-choice", action="store_true", default=None, help="add 3 teacher distractors, A-D")
    p.add_argument("--validate", action="store_true", default=None, help="ask a teacher whether Q is unambiguous")
    p.add_argument("--backend", choices=["local", "ray"], help="local (default) or ray (Ray Data)")
    for flag, (name, kind, text) in _NUMBERS.items():
        p.add_argument(flag, dest=name, type=kind, help=f"{text} (default {defaults[name].default})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--restart", action="store_true", help="discard the folder's previous work and start over")
    p.add_argument("--force", action="store_true", help="resume although the config changed")
    p.set_defaults(func=run)


def _endpoint(spec: str | None, key_env: str | None) -> Endpoint | None:
    return Endpoint.parse(spec, key_env) if spec else None


def build_config(args: argparse.Namespace) -> DistillConfig:
    """File settings, then flags over them; one-line ValueErrors for anything missing or wrong."""
    data: dict[str, Any] = DistillConfig.from_file(args.config) if args.config else {}
    key_env = args.api_key_env or data.get("api_key_env")
    if args.teacher:
        data["teachers"] = [Endpoint.parse(t, key_env) for t in args.teacher]
    for flag_value, name in ((args.question_teacher, "question_teacher"), (args.student, "student"),
                             (args.judge, "equivalence_judge")):  # fmt: skip
        if flag_value:
            data[name] = _endpoint(flag_value, key_env)
    for name in ("images", "annotations", "sam3_model", "benchmark", "variant", "multiple_choice", "validate",
                 "backend"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    for _, (name, _, _) in _NUMBERS.items():
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    if args.no_progress:
        data["progress"] = False
    if key_env:
        data["api_key_env"] = key_env
    if not data.get("images"):
        raise ValueError("--images is required (an image folder or manifest)")
    if not data.get("teachers"):
        raise ValueError("at least one --teacher URL=MODEL is required")
    data.setdefault("question_teacher", data["teachers"][0])
    return DistillConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    if not args.out:
        raise ValueError("--out is required (the run folder)")
    config = build_config(args)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per teacher call drowns the bars
    if config.backend == "ray":
        from zwz.distill.ray_backend import run_ray as runner
    else:
        from zwz.distill.pipeline import run_local as runner
    report = runner(config, args.out, restart=args.restart, force=args.force)
    for stage in report["stages"]:
        drops = ", ".join(f"{k} {v}" for k, v in stage["drops"].items())
        print(f"{stage['name']:>15}: {stage['items_in']:>6} -> {stage['items_out']:<6} {drops}", file=sys.stderr)
    print(json.dumps({"kept": report["kept"], "outputs": report["outputs"]}))
    return 0
