"""``zwz bench`` registration and argument checks (one line each, before any load), the modules' doctests, and
the rule that the test process never imports Locust."""

from __future__ import annotations

import doctest
import importlib
import sys

import pytest

from zwz.cli import build_parser, main


@pytest.mark.parametrize("module", ["zwz.loadtest.plan", "zwz.loadtest.wire", "zwz.loadtest.report",
                                    "zwz.loadtest.server_metrics"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_the_test_process_never_imports_locust():
    # gevent's monkey-patching would reach the uvicorn servers these tests host in threads.
    for module in ("bench", "cli", "plan", "report", "server_metrics", "wire", "workload"):
        importlib.import_module(f"zwz.loadtest.{module}")
    import socket

    assert "locust" not in sys.modules and socket.socket.__module__ == "socket"  # not gevent's


def test_bench_is_a_zwz_subcommand():
    args = build_parser().parse_args(["bench", "--base-url", "http://h:1", "--zoomworld", "6", "--out", "o",
                                      "--users", "1", "8", "--modes", "single", "agent", "--slo-ms", "250"])
    assert (args.command, args.users, args.modes, args.slo_ms, args.agent_side) == (
        "bench", [1, 8], ["single", "agent"], 250, "server")


@pytest.mark.parametrize("argv, message", [
    (["--modes", "single", "zoom"], "unknown mode 'zoom'; choose from single, regional, agent, attention_zoom"),
    (["--users", "0"], "--users needs positive concurrency levels"),
    (["--judge-url", "http://j:1"], "--judge-url and --judge-model go together"),
])  # fmt: skip
def test_cli_refuses_bad_arguments_in_one_line(argv, message, tmp_path, capsys):
    assert main(["bench", "--base-url", "http://127.0.0.1:9", "--zoomworld", "2", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"zwz bench: error: {message}"
    assert not (tmp_path / "zoomworld").exists()  # nothing was generated before the check


def test_cli_says_what_to_install_without_locust(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "locust" else real(name, *a))
    assert main(["bench", "--base-url", "http://127.0.0.1:9", "--zoomworld", "2", "--out", str(tmp_path)]) == 2
    assert "zwz bench needs Locust: pip install" in capsys.readouterr().err


def test_cli_unreachable_server_is_one_line(tmp_path, capsys):
    from zwz.serve_process import free_port

    port = free_port()  # nothing listens on it
    assert main(["bench", "--base-url", f"http://127.0.0.1:{port}", "--zoomworld", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zwz bench: error: cannot reach http://127.0.0.1:{port}")
