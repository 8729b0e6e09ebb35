"""Usage errors of the `magicanimate` command answer as every click program does: the usage line, a hint to
`--help`, the message, and exit code 2 (scripts tell a mistyped command line from a failed run by it)."""

from __future__ import annotations

import pytest

from conftest import run_cli

SUBCOMMANDS = ["animate", "fuse-long", "pose", "download-weights", "eval"]
UNKNOWN = "--zzz-no-such-thing"  # far from every real option, so click adds no "Possible options" hint


def assert_usage_error(code: int, out: str, err: str, command: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == ""
    assert lines[0].startswith(f"Usage: {command} ")
    assert f"Try '{command} --help' for help." in lines
    assert lines[-1] == f"Error: {message}"
    assert "error: " not in err  # not the one-line form of a failed run


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_unknown_option_prints_usage_hint_and_message_and_exits_2(subcommand, capsys):
    code, out, err = run_cli([subcommand, UNKNOWN], capsys)
    assert_usage_error(code, out, err, f"magicanimate {subcommand}", f"No such option: {UNKNOWN}")


def test_missing_required_option_prints_usage_hint_and_message_and_exits_2(tmp_path, capsys):
    code, out, err = run_cli(["animate", tmp_path / "ref.png", tmp_path / "motion.mp4"], capsys)
    assert_usage_error(code, out, err, "magicanimate animate", "Missing option '-o' / '--output'.")


def test_unknown_subcommand_prints_usage_hint_and_message_and_exits_2(capsys):
    code, out, err = run_cli(["zzz-no-such-command", "clip.mp4"], capsys)
    assert_usage_error(code, out, err, "magicanimate", "No such command 'zzz-no-such-command'.")


def test_bad_option_value_is_a_usage_error_naming_the_option(capsys):
    code, out, err = run_cli(["animate", "--size", "big"], capsys)
    assert code == 2 and "Invalid value for '--size'" in err.strip().splitlines()[-1]
