"""The `magicanimate` command: wires the subcommands together and turns user errors into one line."""

from __future__ import annotations

import logging
import sys

import typer

from . import __version__
from .runtime.errors import MagicAnimateError

app = typer.Typer(
    name="magicanimate",
    help="Animate a person in a reference image along a DensePose motion video (MagicAnimate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: Typer 0.29's rich panels print a `<bool>` metavar after every flag (--help included).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"magicanimate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, show_default=False, help="Print the version and exit."
    ),
) -> None:
    """Animate a person in a reference image along a DensePose motion video (MagicAnimate)."""


def _register_commands() -> None:
    from .commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: `--debug` anywhere on the line keeps tracebacks; otherwise errors are one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    logger = logging.getLogger("magicanimate_cli")
    handler = _debug_handler() if debug else None
    if handler is not None:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        _dispatch(args, debug)
    finally:
        if handler is not None:  # a caller that runs several commands in one process gets each one's own
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)


def _dispatch(args: list[str], debug: bool) -> None:
    """Run the command; user errors become one line and an exit code."""
    try:
        # Outside standalone mode Typer returns the exit code of `typer.Exit` (130 for Ctrl-C) instead of exiting.
        code = app(args=args, prog_name="magicanimate", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            if code == 130:
                typer.echo("interrupted", err=True)
            sys.exit(code)
    except MagicAnimateError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:
        # Usage errors (unknown option or command, missing or bad parameter). Typer 0.29 raises its own copy of
        # click's classes (typer._click), all derived from TyperException, so `click.exceptions` never matches.
        _show_usage_error(exc)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected
        if debug:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(1)


def _debug_handler() -> logging.Handler:
    """--debug: our debug log (e.g. the warnings a model's own code raised) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(message)s"))
    return handler


def _show_usage_error(exc: typer.TyperException) -> None:
    """What click prints in standalone mode: the usage line, "Try '... --help' for help.", then the message.

    A bare `magicanimate` has printed its help already (its error carries an empty message), so nothing is added.
    """
    if not exc.format_message():
        return
    show = getattr(exc, "show", None)
    if show is not None:
        show()
    else:
        typer.echo(f"Error: {exc.format_message()}", err=True)
