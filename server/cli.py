"""``zwz serve``: the OpenAI-compatible server.

    zwz serve                                   # the embedded tiny default, on 127.0.0.1:8000
    zwz serve --model /models/ZwZ-8B --host 0.0.0.0 --port 8000 --api-key "$KEY"
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a model behind an OpenAI-compatible API",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder (Qwen2.5-VL / Qwen3-VL); default: the embedded tiny model")
    p.add_argument("--engine", choices=["transformers", "auto"], default=None,
                   help="inference engine (auto: the best available here)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--api-key", default=None, help="require this bearer key on /v1 (or set ZWZ_API_KEY)")
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--max-batch-size", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=None)
    p.add_argument("--allowed-local-media-dir", default=None, help="allow file:// image URLs below this folder")
    p.add_argument("--allow-remote-media", action="store_true", default=None, help="allow http(s) image URLs")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from zwz.server.app import create_app
    from zwz.server.launch import build_engine
    from zwz.server.settings import ServerSettings

    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and k in ServerSettings.model_fields}
    settings = ServerSettings(**overrides)
    engine = build_engine(settings)
    app = create_app(settings, engine)
    logger.info("listening on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower())
    return 0
