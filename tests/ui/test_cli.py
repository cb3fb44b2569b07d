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


def test_zoomworld_level_picks_the_examples_canvas(capsys):
    from zwz.ui.examples import ExampleCatalog

    args = build_parser().parse_args(["ui", "--zoomworld-level", "nano", "--zoomworld", "2"])
    catalog = ExampleCatalog(args.zoomworld, level=args.zoomworld_level)
    nano = catalog.get("zoomworld:5:1")
    assert nano.load_image().size == (448, 448) and nano.meta["level"] == "nano"
    assert ExampleCatalog(1).get("zoomworld:5:0").load_image().size == (1536, 1152)
    with pytest.raises(ValueError, match="level must be one of standard, nano"):
        ExampleCatalog(1, level="tiny")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ui", "--zoomworld-level", "tiny"])
    assert "invalid choice: 'tiny'" in capsys.readouterr().err
