"""The arguments ``zwz eval`` and ``zwz bench`` share: one set of flags and defaults (``zwz.defaults``), one
``EvalSettings`` from them, the API's mode names with the old spellings taken as deprecated aliases."""

from __future__ import annotations

import argparse
import doctest
import json
import logging

import pytest

import zwz.analytics.eval.cli_args as cli_args
from zwz.analytics.eval.cli_args import (add_settings_arguments, check_common_arguments, load_items, parse_modes,
                                         settings_from_args)
from zwz.analytics.eval.runner import EvalSettings
from zwz.cli import build_parser, main
from zwz.defaults import AGENT_MAX_TURNS, MODES, ZOOMWORLD_SIZE
from zwz.distill.zoomworld import NANO_IMAGE_SIZE


def test_doctests():
    result = doctest.testmod(cli_args)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("command, agent_side, modes", [("eval", "client", ["single", "regional"]),
                                                        ("bench", "server", ["single", "agent"])])
def test_both_commands_share_flags_and_defaults(command, agent_side, modes):
    args = build_parser().parse_args([command, "--base-url", "http://h:1", "--zoomworld", "2", "--out", "o"])
    assert settings_from_args(args) == EvalSettings(agent_side=agent_side)
    assert args.modes == modes and tuple(args.zoomworld_size) == ZOOMWORLD_SIZE
    assert args.agent_max_turns == AGENT_MAX_TURNS == 20


def test_settings_from_prefixed_flags():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser.add_argument_group("zwz"), prefix="--zwz-", agent_side="server")
    args = parser.parse_args(["--zwz-max-tokens", "8", "--zwz-agent-fixed-turns", "1"])
    assert settings_from_args(args, prefix="zwz_") == EvalSettings(max_tokens=8, agent_fixed_turns=1,
                                                                   agent_side="server")


def test_old_mode_names_are_taken_with_a_deprecation_note(caplog):
    with caplog.at_level(logging.WARNING):
        assert parse_modes(["global", "attention-zoom", "single", "agent"]) == ["single", "attention_zoom", "agent"]
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["mode 'global' is deprecated; use 'single'",
                     "mode 'attention-zoom' is deprecated; use 'attention_zoom'"]
    assert parse_modes(list(MODES)) == list(MODES)


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_an_unknown_mode_is_one_line(command, tmp_path, capsys):
    assert main([command, "--base-url", "http://127.0.0.1:9", "--zoomworld", "1", "--modes", "global", "zoom",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"zwz {command}: error: unknown mode 'zoom'; choose from single, regional, agent, attention_zoom"
    assert not (tmp_path / "zoomworld").exists()


def test_endpoint_url_without_serve_is_the_base_url(tmp_path):
    from zwz.analytics.eval.cli_args import endpoint_url

    args = build_parser().parse_args(["eval", "--base-url", "http://h:1", "--zoomworld", "2", "--out", "o"])
    with endpoint_url(args, tmp_path) as url:
        assert url == "http://h:1"
    assert not (tmp_path / "server.log").exists()  # nothing was started


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_the_zoomworld_level_sets_the_default_size(command):
    base = [command, "--base-url", "http://h:1", "--zoomworld", "2", "--out", "o"]
    args = build_parser().parse_args(base)
    check_common_arguments(args)
    assert args.zoomworld_level == "standard" and args.zoomworld_size == ZOOMWORLD_SIZE
    args = build_parser().parse_args([*base, "--zoomworld-level", "nano"])
    check_common_arguments(args)
    assert args.zoomworld_size == NANO_IMAGE_SIZE == (448, 448)
    args = build_parser().parse_args([*base, "--zoomworld-level", "nano", "--zoomworld-size", "512x384"])
    check_common_arguments(args)
    assert args.zoomworld_size == (512, 384)


def test_load_items_generates_the_level_once(tmp_path, caplog):
    args = build_parser().parse_args(["eval", "--base-url", "http://h:1", "--zoomworld", "3", "--zoomworld-level",
                                      "nano", "--out", str(tmp_path)])
    check_common_arguments(args)
    items, name = load_items(args, tmp_path)
    assert name == "zoomworld(level=nano, seed=0, size=448x448)"
    assert [i.id for i in items] == ["zwn0-00000", "zwn0-00001", "zwn0-00002"]
    assert items[0].load_image().size == (448, 448) and items[0].bbox is not None
    assert json.loads((tmp_path / "zoomworld" / "spec.json").read_text())["level"] == "nano"
    with caplog.at_level(logging.INFO):
        load_items(args, tmp_path)  # cached: not generated again
    assert not any("generating" in r.getMessage() for r in caplog.records)
    args.zoomworld_level, args.zoomworld_size = "standard", (1024, 1024)  # another level: generated afresh
    items, name = load_items(args, tmp_path)
    assert name == "zoomworld(seed=0, size=1024x1024)" and items[0].id == "zw0-00000"
