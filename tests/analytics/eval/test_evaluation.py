"""``zwz eval``: end to end on ZoomWorld through a live tiny server (with a resume), and its parts; only
third-party servers (a judge, a non-zwz OpenAI endpoint) are stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from zwz.distill.benchmark import BenchItem, load_benchmark
from zwz.analytics.eval.client import EvalError
from zwz.analytics.eval.report import build_report, render_markdown
from zwz.analytics.eval.runner import EvalSettings, PredictionStore
from zwz.analytics.eval.evaluation import evaluate
from zwz.scoring.judge import Judge
from zwz.cli import main
from zwz.distill.zoomworld import generate_zoomworld

MODEL = "qwen3_vl"
MODES = ["single", "regional", "agent", "attention_zoom"]
# Small and quick: 1024 px ZoomWorld images under a 256x256 pixel budget, 4-token answers, the agent zooming
# once (forced: random weights never call the tool) within two model calls.
FAST = ["--zoomworld", "6", "--zoomworld-size", "1024x1024", "--max-tokens", "4", "--agent-max-tokens", "4",
        "--agent-max-turns", "2", "--agent-fixed-turns", "1", "--max-pixels", str(256 * 256), "--concurrency", "2",
        "--warmup", "0", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def server(serve, tiny_models):
    with serve(tiny_models["qwen3_vl"]) as (url, app):
        yield url


def _request_text(path: str, body: bytes) -> str:
    if not body:
        return ""
    data = json.loads(body)
    if path.endswith("/zoom/attention"):
        return str(data.get("question", ""))
    texts = []
    for message in data.get("messages", []):
        content = message.get("content")
        texts += [content] if isinstance(content, str) else [p.get("text", "") for p in content or []]
    return "\n".join(t for t in texts if t)


def counting_proxy(upstream: str):
    """An ASGI proxy that logs (path, request text) and the request bodies (``app.state.bodies``), and answers
    400 to requests matching ``app.state.fail``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def forward(request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        text = _request_text(path, body)
        request.app.state.log.append((path, text))
        request.app.state.bodies.append((path, json.loads(body) if body else None))
        if any(path == p and needle in text for p, needle in request.app.state.fail):
            return JSONResponse({"error": {"message": "injected failure", "type": "invalid_request_error",
                                           "param": None, "code": None}}, status_code=400)
        async with httpx.AsyncClient(timeout=120) as client:
            r = await client.request(request.method, upstream + path, content=body,
                                     headers={"content-type": request.headers.get("content-type", "application/json")})
        return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))

    app = Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])
    app.state.log, app.state.bodies, app.state.fail = [], [], set()
    return app


def single_requests(server: str) -> float:
    for family in text_string_to_metric_families(httpx.get(server + "/metrics").text):
        for sample in family.samples:
            if sample.name == "zwz_requests_total" and sample.labels.get("mode") == "single":
                return sample.value
    return 0.0


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_end_to_end_with_resume(server, run_app, tmp_path):
    out = tmp_path / "run"
    proxy = counting_proxy(server)
    with run_app(proxy) as url:
        argv = ["eval", "--base-url", url, "--model", MODEL, "--modes", *MODES, "--out", str(out), *FAST]
        # First run: 3 items; the attention map of item 1 fails (a non-retryable 400).
        prompts = [i.prompt for i in generate_zoomworld(6, seed=0, image_size=(1024, 1024))]
        assert len(set(prompts)) == 6
        proxy.state.fail = {("/v1/zoom/attention", prompts[1])}
        assert main([*argv, "--limit", "3"]) == 1  # exit status 1: an item failed
        items = load_benchmark(out / "zoomworld")  # the cached ZoomWorld: the same items
        assert [i.prompt for i in items] == prompts

        path = out / "predictions.jsonl"
        lines = read_lines(path)
        assert len(lines) == 12
        failed = [r for r in lines if r["error"]]
        assert [(r["mode"], r["id"], r["error_stage"]) for r in failed] == [("attention_zoom", items[1].id, "request")]
        assert "injected failure" in failed[0]["error"]
        with path.open("a") as fh:  # a crash in the middle of a write leaves a torn line
            fh.write('{"id": "zw0-00004", "mode": "glo')

        # Second run, all 6 items: only the unfinished (mode, item) pairs are requested.
        proxy.state.fail, proxy.state.log = set(), []
        before = single_requests(server)
        assert main(argv) == 0
        log = proxy.state.log
        chat_calls = sum(p == "/v1/chat/completions" for p, _ in log)
        assert single_requests(server) - before == chat_calls

    def calls(index: int, kind: str) -> int:
        return sum(p.endswith(kind) and prompts[index] in text for p, text in log)

    final = read_lines(path)
    assert len(final) == 24 and len({(r["mode"], r["id"]) for r in final}) == 24
    assert not any(r["error"] for r in final)
    kept = {(r["mode"], r["id"]): r for r in lines if not r["error"]}
    assert all(r == kept[(r["mode"], r["id"])] for r in final if (r["mode"], r["id"]) in kept)  # not redone
    assert calls(0, "completions") == calls(2, "completions") == calls(0, "attention") == 0
    assert (calls(1, "attention"), calls(1, "completions")) == (1, 1)  # the failed item is retried
    by_key = {(r["mode"], r["id"]): r for r in final}
    for index in (3, 4, 5):
        agent = by_key[("agent", items[index].id)]
        assert agent["model_calls"] == 2 and agent["trajectory"]["forced_calls"] == 1
        assert calls(index, "attention") == 1
        assert calls(index, "completions") == 3 + agent["model_calls"]  # single, regional, attention_zoom, agent
    zoom = by_key[("attention_zoom", items[3].id)]
    assert zoom["model_calls"] == 2 and zoom["image_encodings"] == 3
    assert zoom["trajectory"]["crop_size"][0] > 0

    report = json.loads((out / "report.json").read_text())
    assert list(report["modes"]) == MODES
    for stats in report["modes"].values():
        assert stats["n_items"] == stats["n_answered"] == 6 and stats["n_errors"] == 0
        assert stats["n_decided"] + stats["n_unjudged"] == 6  # no judge: undecided items are flagged, not 0
        assert stats["latency_ms"]["p50"] > 0
    assert report["modes"]["single"]["model_calls_mean"] == 1.0
    assert report["random_weights"] is True
    assert set(report["zooming_gap"]) >= {"single", "regional", "gap"}
    markdown = (out / "report.md").read_text()
    assert "Zooming gap" in markdown and "| Regional |" in markdown and "random" in markdown
    with Image.open(out / "accuracy_vs_speed.png") as png:
        png.load()
        assert png.format == "PNG" and png.width > 100


def test_eval_server_side_modes(server, tmp_path, capsys):
    out = tmp_path / "server-side"
    argv = ["eval", "--base-url", server, "--modes", "agent", "attention_zoom", "--agent-side", "server",
            "--out", str(out), "--limit", "2", *FAST]
    assert main(argv) == 0  # --model omitted: the endpoint's only model
    records = read_lines(out / "predictions.jsonl")
    assert len(records) == 4
    for r in records:
        assert r["trajectory"]["mode"] == r["mode"] and r["model_calls"] == 2
    # Settings are part of the run: resuming with others is refused rather than mixed into one file.
    assert main([*argv, "--agent-max-turns", "3"]) == 2
    assert "other settings (agent_max_turns 2 -> 3)" in capsys.readouterr().err


def test_eval_cli_errors(server, tmp_path, capsys):
    out = str(tmp_path / "e")
    assert main(["eval", "--base-url", "http://127.0.0.1:9", "--zoomworld", "1", "--zoomworld-size", "1024x1024",
                 "--out", out]) == 2
    assert capsys.readouterr().err.strip().startswith("zwz eval: error: cannot reach http://127.0.0.1:9")
    assert main(["eval", "--base-url", server, "--model", "nope", "--zoomworld", "1", "--zoomworld-size",
                 "1024x1024", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model 'nope'" in err and MODEL in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q"}\n')
    assert main(["eval", "--base-url", server, "--benchmark", str(bad), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing column(s) image, answer" in err


# ------------------------------------------------------------------------- small items on the live server
# 4-token answers from random weights: never "blue" exactly, so the rules leave every answer to a judge.
QUICK = EvalSettings(max_tokens=4, max_pixels=256 * 256)


def served_model(server: str) -> str:
    return httpx.get(server + "/v1/models").json()["data"][0]["id"]


def chat_bodies(proxy) -> list[dict]:
    return [b for p, b in proxy.state.bodies if p == "/v1/chat/completions"]


def tiny_items(n: int = 2) -> list[BenchItem]:
    image = Image.new("RGB", (64, 48), (10, 120, 200))
    return [BenchItem(f"q{i}", image, image.crop((0, 0, 16, 16)), "What color is the handle?", "blue",
                      dimension="color") for i in range(n)]


def non_zwz_endpoint(reply: str, calls: list[dict]) -> httpx.MockTransport:
    """A third-party OpenAI-compatible server (no ``/health``) that ignores zwz's request fields."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "stub", "object": "model"}]})
        if request.url.path == "/health":
            return httpx.Response(404)
        body = json.loads(request.content)
        calls.append(body)
        return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})

    return httpx.MockTransport(handler)


def stub_judge(verdict: str):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request):
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": f"\\boxed{{{verdict}}}"}}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def test_unjudged_then_judge_failure_then_judged_without_new_requests(server, run_app, tmp_path):
    proxy = counting_proxy(server)
    with run_app(proxy) as url:
        common = dict(base_url=url, modes=["single"], progress=False, warmup=0, settings=QUICK)
        report = evaluate(tiny_items(), tmp_path, **common)
        stats = report["modes"]["single"]
        assert (stats["accuracy"], stats["n_unjudged"], stats["accuracy_if_unjudged_right"]) == (None, 2, 1.0)
        calls = chat_bodies(proxy)
        assert len(calls) == 2 and calls[0]["model"] == served_model(server) and calls[0]["temperature"] == 0.0
        assert "unjudged" in render_markdown(report)

        broken = Judge("http://127.0.0.1:9", "judge", max_retries=0, timeout=5)
        report = evaluate(tiny_items(), tmp_path, judge=broken, **common)
        stats = report["modes"]["single"]
        assert (stats["n_errors"], stats["n_judge_errors"], stats["accuracy"]) == (2, 2, None)  # errors, not zeros
        assert report["errors"][0]["stage"] == "judge"

        with run_app(stub_judge("Yes")) as judge_url:
            judge = Judge(judge_url, "judge", cache_path=tmp_path / "judge_cache.jsonl")
            report = evaluate(tiny_items(), tmp_path, judge=judge, **common)
        assert len(chat_bodies(proxy)) == 2  # stored answers were judged; the model was not asked again
    stats = report["modes"]["single"]
    assert (stats["accuracy"], stats["decided_by"]["judge"], stats["n_errors"]) == (1.0, 2, 0)
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 2


def test_server_side_mode_needs_a_zwz_server(tmp_path):
    calls: list[dict] = []
    with pytest.raises(EvalError, match="ignored zwz_mode"):
        evaluate(tiny_items(), tmp_path, base_url="http://stub", modes=["agent"], progress=False,
                 settings=EvalSettings(agent_side="server", agent_max_turns=3), transport=non_zwz_endpoint("x", calls))
    assert calls[0]["zwz_mode"] == "agent" and calls[0]["zwz_agent"] == {"max_turns": 3, "fixed_turns": 0}
    assert (tmp_path / "report.json").exists()  # a stopped run still reports what it has


def test_prediction_store_keeps_one_line_per_item(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = [{"mode": "single", "id": "a", "score": 0.0}, {"mode": "single", "id": "b", "error_stage": "request"},
            {"mode": "single", "id": "a", "score": 1.0}, {"mode": "regional", "id": "a", "score": 1.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"mode": "sin')
    store = PredictionStore(path)
    assert set(store.records) == {("single", "a"), ("regional", "a")}  # b failed: to be retried
    assert store.records[("single", "a")]["score"] == 1.0
    assert [json.loads(line)["mode"] for line in path.read_text().splitlines()] == ["single", "regional"]


def test_prediction_store_reads_old_mode_names(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = [{"mode": "global", "id": "a", "score": 1.0}, {"mode": "attention-zoom", "id": "a", "score": 0.0},
            {"mode": "single", "id": "b", "score": 1.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = PredictionStore(path)
    assert set(store.records) == {("single", "a"), ("attention_zoom", "a"), ("single", "b")}
    assert [json.loads(line)["mode"] for line in path.read_text().splitlines()] == [
        "single", "attention_zoom", "single"]  # rewritten with the new names


def test_report_follows_table_7():
    items = [BenchItem(f"c{i}", b"", None, "q", "a", dimension="counting") for i in range(3)]
    items += [BenchItem("o0", b"", None, "q", "a", dimension="ocr")]
    scores = {"single": {"c0": 1, "c1": 0, "c2": 0, "o0": 1}, "regional": {"c0": 1, "c1": 1, "c2": 0, "o0": 1}}
    records = [{"mode": m, "id": i, "dimension": "ocr" if i == "o0" else "counting", "score": float(s),
                "decided_by": "rule", "latency_ms": 10.0 * (k + 1), "model_calls": 1, "image_encodings": 1}
               for m, row in scores.items() for k, (i, s) in enumerate(row.items())]
    report = build_report(records, {"single": items, "regional": items})
    gap = report["zooming_gap"]
    assert gap["dimensions"] == ["counting", "ocr"]
    assert gap["single"]["counting"] == pytest.approx(1 / 3) and gap["regional"]["counting"] == pytest.approx(2 / 3)
    assert gap["single"]["avg"] == 0.5 and gap["regional"]["avg"] == 0.75  # weighted by items, not by dimension
    assert gap["gap"]["counting"] == pytest.approx(1 / 3) and gap["gap"]["ocr"] == 0 and gap["gap"]["avg"] == 0.25
    assert report["modes"]["single"]["latency_ms"]["p50"] == 25.0
    markdown = render_markdown(report)
    assert "| Global (single) | 33.33 | 100.00 | 50.00 |" in markdown
    assert "| *Zooming Gap* | 33.33 | 0.00 | 25.00 |" in markdown


def test_a_run_written_with_the_old_mode_names_resumes(server, run_app, tmp_path):
    proxy = counting_proxy(server)
    with run_app(proxy) as url, run_app(stub_judge("Yes")) as judge_url:
        common = dict(base_url=url, progress=False, warmup=0, settings=QUICK)
        evaluate(tiny_items(), tmp_path, modes=["single"], judge=Judge(judge_url, "judge"), **common)
        assert len(chat_bodies(proxy)) == 2
        for name in ("predictions.jsonl", "run.json"):  # as a run before the rename wrote them
            path = tmp_path / name
            path.write_text(path.read_text().replace('"single"', '"global"'))
        assert '"global"' in (tmp_path / "run.json").read_text()

        with pytest.warns(DeprecationWarning, match="'global' is deprecated"):
            from zwz.defaults import canonical_mode

            canonical_mode("global")
        report = evaluate(tiny_items(), tmp_path, modes=["global"], **common)  # the old spelling, from code
        assert len(chat_bodies(proxy)) == 2  # nothing asked again
    assert list(report["modes"]) == ["single"] and report["modes"]["single"]["accuracy"] == 1.0
    run = json.loads((tmp_path / "run.json").read_text())
    assert list(run["modes"]) == ["single"]


def test_eval_nano_level_with_coverage(server, run_app, tmp_path, capsys):
    """``--zoomworld-level nano --coverage``: the attention map of every item's question with its evidence box;
    coverage beside the box's area share in the report; a rerun asks nothing again."""
    out = tmp_path / "nano"
    proxy = counting_proxy(server)
    with run_app(proxy) as url:
        argv = ["eval", "--base-url", url, "--model", MODEL, "--zoomworld", "8", "--zoomworld-level", "nano",
                "--coverage", "--modes", "single", "regional", "--out", str(out), "--max-tokens", "4",
                "--max-pixels", str(256 * 256), "--concurrency", "2", "--warmup", "0", "--no-progress"]
        assert main(argv) == 0
        maps = [b for p, b in proxy.state.bodies if p == "/v1/zoom/attention" and b and "box" in b]
        items = load_benchmark(out / "zoomworld")
        assert len(items) == 8 and items[0].load_image().size == (448, 448)
        assert sorted(tuple(b["box"]) for b in maps) == sorted(tuple(i.bbox) for i in items)
        assert all(b["heatmap"] is False and b["mm_processor_kwargs"] == {"max_pixels": 256 * 256} for b in maps)
        assert main(argv) == 0  # resumed: nothing is asked again
        assert len([b for p, b in proxy.state.bodies if p == "/v1/zoom/attention" and b and "box" in b]) == 8
        capsys.readouterr()
        assert main([*argv, "--max-pixels", str(128 * 128)]) == 2  # other settings: refused, not mixed
        assert "other settings" in capsys.readouterr().err
        assert main(argv) == 0
    records = read_lines(out / "coverage.jsonl")
    assert len(records) == 8 and not any(r["error"] for r in records)
    share = {i.id: i.meta["box_fraction"] for i in items}
    for r in records:
        assert 0.0 <= r["coverage"] <= 1.0 and r["area_share"] == pytest.approx(share[r["id"]], abs=1e-4)
    report = json.loads((out / "report.json").read_text())
    assert report["benchmark"] == "zoomworld(level=nano, seed=0, size=448x448)"
    cov = report["coverage"]["all"]
    assert cov["n"] == 8 and cov["coverage"]["low"] <= cov["coverage"]["estimate"] <= cov["coverage"]["high"]
    assert cov["area_share"]["estimate"] == pytest.approx(sum(share.values()) / 8, abs=1e-4)
    assert json.loads((out / "run.json").read_text())["coverage"] == {"max_pixels": 256 * 256}
    assert "Relative-attention coverage of the evidence box" in (out / "report.md").read_text()
    assert "coverage:" in capsys.readouterr().out
