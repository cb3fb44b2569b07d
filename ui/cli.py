"""``zwz ui``: the Gradio dual-view UI, a client of a zwz server.

    zwz ui --server http://127.0.0.1:8000                  # open http://127.0.0.1:7860
    zwz ui --server http://gpu-box:8000 --api-key "$KEY" --benchmark ZoomBench/data/test-00000-of-00001.parquet
    zwz ui --with-server [--model /models/ZwZ-8B]          # demo: starts `zwz serve` too, stops it on exit
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from zwz.defaults import AGENT_FIXED_TURNS, ANSWER_MAX_TOKENS, REQUEST_TIMEOUT_S, ZOOMWORLD_SEED
from zwz.distill.zoomworld import LEVELS

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("ui", help="Gradio UI: global vs regional vs agent vs attention zoom, with heatmaps",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=os.environ.get("ZWZ_SERVER", "http://127.0.0.1:8000"),
                   help="zwz server URL (or set ZWZ_SERVER; default http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=os.environ.get("ZWZ_API_KEY"), help="the server's key (or set ZWZ_API_KEY)")
    p.add_argument("--model-name", default=None, help="served model to ask for (default: the first the server lists)")
    p.add_argument("--host", default="127.0.0.1", help="interface the UI listens on")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--benchmark", default=None, help="ZoomBench-format file or folder to offer examples from")
    p.add_argument("--zoomworld", type=int, default=12, metavar="N", help="ZoomWorld examples per seed (0: none)")
    p.add_argument("--seed", type=int, default=ZOOMWORLD_SEED, help="initial ZoomWorld seed")
    p.add_argument("--zoomworld-level", choices=LEVELS, default="standard",
                   help="ZoomWorld examples' level (nano: the one zwz-nano, the embedded default, was trained on)")
    p.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_S,
                   help=f"seconds to wait for one server call (default {REQUEST_TIMEOUT_S:g})")
    p.add_argument("--max-tokens", type=int, default=ANSWER_MAX_TOKENS,
                   help="initial answer length limit (a form setting)")
    p.add_argument("--fixed-turns", type=int, default=AGENT_FIXED_TURNS,
                   help="initial agent fixed zoom turns (a form setting; 1 is chosen for random-weight servers)")
    demo = p.add_argument_group("demo")
    demo.add_argument("--with-server", action="store_true",
                      help="start `zwz serve` on a free port for the UI's lifetime (ignores --server)")
    demo.add_argument("--model", default=None, help="with --with-server: model folder (default: the embedded zwz-nano)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=run)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from zwz.ui.app import build_app, launch
    from zwz.ui.examples import ExampleCatalog
    from zwz.serve_process import serve_subprocess
    from zwz.ui.views import RunSettings

    if args.model and not args.with_server:
        raise ValueError("--model needs --with-server (without it the UI uses the server at --server)")
    catalog = ExampleCatalog(args.zoomworld, benchmark=args.benchmark, level=args.zoomworld_level)
    server = serve_subprocess(args.model, api_key=args.api_key) if args.with_server else nullcontext(args.server)
    # `kill` stops the UI like Ctrl-C (also where a shell started it with SIGINT ignored), so the demo server
    # below is stopped too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per request
    with server as url:
        demo = build_app(url, api_key=args.api_key, model=args.model_name, catalog=catalog, seed=args.seed,
                         timeout=args.timeout,
                         defaults=RunSettings(max_tokens=args.max_tokens, agent_fixed_turns=args.fixed_turns))
        logger.info("UI on http://%s:%d (server %s)", args.host, args.port, url)
        launch(demo, host=args.host, port=args.port)
    return 0
