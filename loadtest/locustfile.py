"""The benchmark users for plain Locust (web UI, distributed runs, your own shapes): the same rows as ``zwz bench``.

    locust -f "$(python -c 'import zwz.loadtest.locustfile as f; print(f.__file__)')" \\
        --host http://127.0.0.1:8000 --zwz-benchmark runs/bench/zoomworld --zwz-slo-ms 2000 \\
        SingleUser AgentUser

Pick the user classes by name (``SingleUser``, ``RegionalUser``, ``AgentUser``, ``AttentionZoomUser``; all four
by default). ``--json-file`` (or ``environment.stats`` in a ``test_stop`` listener) gives exact final figures;
the per-second CSV misses the end of a run. ``zwz bench`` runs these classes headless for a sweep and builds
the report. Wrong answers are Locust failures of the ``SCORE`` rows (so the failure ratio is the error rate);
the exit code is 1 only when requests failed (``ITEM``/``POST`` rows), not for wrong answers.
"""

from __future__ import annotations

from locust import events

from zwz.analytics.eval.cli_args import add_settings_arguments, settings_from_args
from zwz.defaults import MODES
from zwz.endpoint import api_base, auth_headers
from zwz.loadtest.plan import SweepPlan
from zwz.loadtest.users import AgentUser, AttentionZoomUser, RegionalUser, SingleUser  # noqa: F401
from zwz.loadtest.workload import configure


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    g = parser.add_argument_group("zwz benchmark")
    g.add_argument("--zwz-benchmark", required=True, help="ZoomBench-format file or folder (zwz bench writes ZoomWorld "
                   "to <out>/zoomworld)")
    g.add_argument("--zwz-model", default="", help="served model name (default: the server's only one)")
    g.add_argument("--zwz-api-key", default=None)
    g.add_argument("--zwz-limit", type=int, default=None, help="only the first N items")
    g.add_argument("--zwz-slo-ms", type=float, default=2000.0, help="latency objective for the SLO rows")
    add_settings_arguments(g, prefix="--zwz-", agent_side="server")  # zwz bench's flags, prefixed
    g.add_argument("--zwz-no-stream", action="store_true")


def _served_model(host: str, api_key: str | None) -> str:
    import httpx

    served = [m["id"] for m in httpx.get(api_base(host) + "/models", headers=auth_headers(api_key),
                                         timeout=30).json()["data"]]
    if len(served) != 1:
        raise ValueError(f"{host} serves {len(served)} models ({', '.join(served)}); pick one with --zwz-model")
    return served[0]


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    o = environment.parsed_options
    if o is None or not environment.host:
        raise ValueError("run with --host http://HOST:PORT and --zwz-benchmark PATH")
    settings = settings_from_args(o, prefix="zwz_")
    # modes, users and duration are Locust's here (user classes, -u, -t): the plan only carries the workload.
    plan = SweepPlan(base_url=environment.host, model=o.zwz_model or _served_model(environment.host, o.zwz_api_key),
                     benchmark=o.zwz_benchmark, modes=list(MODES), users=[1], duration_s=1.0, slo_ms=o.zwz_slo_ms,
                     settings=settings, api_key=o.zwz_api_key, limit=o.zwz_limit, stream=not o.zwz_no_stream)
    w = configure(plan)
    w.start_cell(*(mode for mode in MODES if w.items_for(mode)))  # regional needs items with a crop


@events.quitting.add_listener
def _exit_code(environment, **_kwargs) -> None:
    failed = sum(e.num_failures for e in environment.stats.entries.values() if e.method in ("ITEM", "POST"))
    environment.process_exit_code = 1 if failed or (environment.runner and environment.runner.exceptions) else 0
