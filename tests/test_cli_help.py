"""Help names every free-form value by what it is (`--fps <rate>`, `--shard <I/N|auto>`), never a bare type."""

from __future__ import annotations

import pytest
import typer

from conftest import run_cli
from magicanimate_cli.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_shows_a_bare_str_metavar(command, capsys):
    code, help_text, _ = run_cli([command, "--help"], capsys)
    assert code == 0 and "--help" in help_text
    bare = [line.strip() for line in help_text.splitlines() if "<str>" in line or " TEXT " in line]
    assert not bare, bare


def test_the_free_form_values_the_issue_names_read_as_what_they_are(capsys):
    _, help_text, _ = run_cli(["animate", "--help"], capsys)
    for shown in ("--fps <rate>", "--device <device>", "--shard <I/N|auto>", "--pose-model <r50|r101|file>",
                  "--align-pairs <M:R,...>"):
        assert shown in help_text, shown
