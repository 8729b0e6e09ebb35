"""Help names every free-form value by what it is (`--fps <rate>`, `--shard <I/N|auto>`), never a bare type."""

from __future__ import annotations

import click
import typer

from magicanimate_cli.cli import app

BARE = ("<str>", "TEXT")


def test_no_option_of_any_command_shows_a_bare_str_metavar():
    root = typer.main.get_command(app)
    bare = []
    for name, command in root.commands.items():
        context = click.Context(command, info_name=name)
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag and param.make_metavar(context) in BARE:
                bare.append(f"{name} {param.opts[0]}")
    assert not bare, bare


def test_the_free_form_values_the_issue_names_read_as_what_they_are(capsys):
    from conftest import run_cli

    _, help_text, _ = run_cli(["animate", "--help"], capsys)
    for shown in ("--fps <rate>", "--device <device>", "--shard <I/N|auto>", "--pose-model <r50|r101|file>",
                  "--align-pairs <M:R,...>"):
        assert shown in help_text, shown
