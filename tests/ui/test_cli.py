"""``zwz ui`` registration and argument checks, and the UI modules' doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest

from zwz.cli import build_parser, main


def test_ui_is_a_zwz_subcommand():
    args = build_parser().parse_args(["ui", "--server", "http://h:9000", "--port", "7000", "--zoomworld", "0"])
    got = (args.command, args.server, args.port, args.zoomworld, args.with_server)
    assert got == ("ui", "http://h:9000", 7000, 0, False)


def test_model_without_with_server_is_refused(capsys):
    assert main(["ui", "--model", "/models/x"]) == 2
    assert "--model needs --with-server" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["zwz.ui.client", "zwz.ui.views"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
