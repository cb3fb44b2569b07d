"""``zwz serve``: the OpenAI-compatible server.

    zwz serve                                   # zwz-nano, the embedded default (trained here), on 127.0.0.1:8000
    zwz serve --model /models/ZwZ-8B --host 0.0.0.0 --port 8000 --api-key "$KEY"
    zwz serve --model /models/ZwZ-8B --engine vllm --tensor-parallel-size 2 --max-model-len 32768
"""

from __future__ import annotations

import argparse
import logging
import os

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a model behind an OpenAI-compatible API",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder (Qwen2.5-VL / Qwen3-VL); default: zwz-nano, the embedded model "
                                   "trained by `zwz train nano`")
    p.add_argument("--engine", choices=["transformers", "vllm", "auto"], default=None,
                   help="inference engine (auto: vLLM when installed and a CUDA GPU is present, else transformers)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--api-key", default=None, help="require this bearer key on /v1 (or set ZWZ_API_KEY)")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-model-len", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--max-batch-size", "--max-num-seqs", dest="max_batch_size", type=int, default=None,
                   help="most requests decoded together (default: 8 on transformers, vLLM's own on vLLM)")
    p.add_argument("--max-queue", type=int, default=None, help="requests waiting beyond those before 503s")
    vllm = p.add_argument_group("vLLM engine")
    vllm.add_argument("--tensor-parallel-size", type=int, default=None, help="GPUs one model is split over")
    vllm.add_argument("--gpu-memory-utilization", type=float, default=None,
                      help="share of each GPU's memory vLLM may use (default 0.9)")
    vllm.add_argument("--limit-images", type=int, default=None,
                      help="images per prompt vLLM budgets for (default: --max-images-per-request)")
    vllm.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=None,
                      help="skip CUDA graphs and compilation (default: only on CPU)")
    p.add_argument("--batch-wait-ms", type=float, default=None,
                   help="extra wait for more requests before a batch starts (transformers engine; default 0)")
    p.add_argument("--default-max-tokens", type=int, default=None, help="max_tokens of requests without one (512)")
    p.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 32 MiB)")
    p.add_argument("--max-images-per-request", type=int, default=None)
    p.add_argument("--max-image-pixels", type=int, default=None, help="largest image, in pixels (default 64 M)")
    p.add_argument("--allowed-local-media-dir", default=None, help="allow file:// image URLs below this folder")
    p.add_argument("--allow-remote-media", action="store_true", default=None, help="allow http(s) image URLs")
    p.add_argument("--remote-media-timeout-s", type=float, default=None, help="seconds to fetch one http(s) image")
    shape = p.add_argument_group("request-shape limits (over one: a 400 before any work)")
    for flag, what in (("--max-messages", "messages in one request (2048)"),
                       ("--max-content-parts", "text and image parts over all messages (4096)"),
                       ("--max-text-chars", "characters of text, image URLs aside (1000000)"),
                       ("--max-stop-sequences", "stop strings (16)"),
                       ("--max-stop-chars", "characters in one stop string (1024)"),
                       ("--max-tools", "tools (128)"),
                       ("--max-json-values", "JSON values in one body (100000)")):
        shape.add_argument(flag, type=int, default=None, help=what)
    # Not a server setting, but read from ZWZ_LOG_LEVEL like every other flag's variable.
    p.add_argument("--log-level", default=os.environ.get("ZWZ_LOG_LEVEL", "info"))
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """ServerSettings from the flags given (unset flags fall back to ZWZ_* variables, then defaults)."""
    from zwz.server.settings import ServerSettings

    overrides = {k: v for k, v in vars(args).items() if v is not None and k in ServerSettings.model_fields}
    return ServerSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from zwz.server.api.app import create_app
    from zwz.server.launch import build_engine

    settings = settings_from_args(args)
    engine = build_engine(settings)
    app = create_app(settings, engine)
    logger.info("listening on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower())
    return 0
