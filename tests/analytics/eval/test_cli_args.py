"""The arguments ``zwz eval`` and ``zwz bench`` share: one set of flags and defaults (``zwz.defaults``), one
``EvalSettings`` from them, the API's mode names with the old spellings taken as deprecated aliases."""

from __future__ import annotations

import argparse
import doctest
import logging

import pytest

import zwz.analytics.eval.cli_args as cli_args
from zwz.analytics.eval.cli_args import add_settings_arguments, parse_modes, settings_from_args
from zwz.analytics.eval.runner import EvalSettings
from zwz.cli import build_parser, main
from zwz.defaults import AGENT_MAX_TURNS, MODES, ZOOMWORLD_SIZE


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
