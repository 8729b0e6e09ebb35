"""The README and docs/ show only command lines the real command accepts, and link only to files that exist.

Every `magicanimate ...` line in a code block or an inline code span of README.md and docs/*.md (also
`.venv/bin/magicanimate ...`, `torchrun ... -m magicanimate_cli ...`, backslash-continued lines, and spans such as
`fuse-long --nproc` that start with a subcommand and give an option) is checked against the click command objects
of the Typer app itself: the subcommand must exist and every option it uses must be one of that subcommand's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from magicanimate_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250

# Pages that README may link to before they are written (none now: every link is checked).
PENDING: set[str] = set()

# `magicanimate_cli.cli.main` takes `--debug` anywhere on the line before the command line is parsed.
GLOBAL_OPTIONS = {"--debug"}

# A program name: `magicanimate`, a path ending in it (`.venv/bin/magicanimate`), or `python -m magicanimate_cli`.
_PROGRAM = re.compile(r"(?:(?<=[\s(])|^)(?:[\w.~/-]*/)?magicanimate(?=\s|$)|(?:(?<=\s)|^)-m\s+magicanimate_cli(?=\s|$)")
# Tokens that end a command: shell operators and comments.
_SHELL_END = {"|", "||", "&", "&&", ";", ">", ">>", "2>", "<", "--"}
_SUBCOMMAND_WORD = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class ShownCommand:
    """One command line as a page shows it: where, and the words after the program name."""

    file: str
    line: int
    text: str
    words: tuple[str, ...]


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def _code_spans(paragraph: str) -> list[tuple[int, str]]:
    """Inline code spans of a paragraph (which may wrap over lines), with the line offset each starts on."""
    return [(paragraph[: m.start()].count("\n"), m.group(1)) for m in re.finditer(r"`([^`]+)`", paragraph)]


def shown_text(markdown: str) -> list[tuple[int, str, bool]]:
    """(line number, text, in a code block) for every code-block line (continuations joined) and inline code span."""
    out: list[tuple[int, str, bool]] = []
    lines = markdown.splitlines()
    in_code = False
    paragraph: list[str] = []
    paragraph_start = 0
    pending = ""
    pending_line = 0
    last_code_line = 0

    def flush_paragraph() -> None:
        if paragraph:
            for offset, span in _code_spans("\n".join(paragraph)):
                out.append((paragraph_start + offset, span.replace("\n", " "), False))
            paragraph.clear()

    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith("```"):
            flush_paragraph()
            in_code = not in_code
            continue
        if in_code:
            stripped = line.lstrip()
            indented_option = stripped != line and stripped[:2] in ("[-", "--")
            if indented_option and out and out[-1][2] and last_code_line == number - 1:
                # An indented usage synopsis continues the line above it without a backslash.
                out[-1] = (out[-1][0], out[-1][1] + " " + stripped, True)
                last_code_line = number
                continue
            if not pending:
                pending_line = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append((pending_line, pending + line, True))
            pending = ""
            last_code_line = number
            continue
        if not line.strip():
            flush_paragraph()
            continue
        if not paragraph:
            paragraph_start = number
        paragraph.append(line)
    flush_paragraph()
    return out


def _words_until_shell_end(text: str) -> list[str]:
    words = []
    for word in text.split():
        if word in _SHELL_END or word.startswith("#"):
            break
        if word.endswith(";"):
            words.append(word[:-1])
            break
        words.append(word)
    return words


def shown_commands(markdown: str, file: str, subcommands: set[str]) -> list[ShownCommand]:
    """Every command line a page shows."""
    found = []
    for line, text, in_code in shown_text(markdown):
        matches = list(_PROGRAM.finditer(text))
        for match in matches:
            words = _words_until_shell_end(text[match.end():])
            if words:
                found.append(ShownCommand(file, line, text.strip(), tuple(words)))
        if not matches and not in_code:
            # `fuse-long --nproc`, `download-weights --pose`: a subcommand and an option, without the program name.
            words = text.split()
            if len(words) > 1 and words[0] in subcommands and words[1].startswith("-"):
                found.append(ShownCommand(file, line, text.strip(), tuple(_words_until_shell_end(text))))
    return found


def _options_of(command) -> set[str]:
    context = command.context_class(command, info_name=command.name)
    names = set(command.get_help_option_names(context))
    for param in command.params:
        names.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("-"))
    return names | GLOBAL_OPTIONS


def _option_name(word: str) -> str | None:
    """The option a word names (`--fit`, `[--metrics` → `--metrics`, `--revision=x` → `--revision`), or None."""
    word = word.strip("[](),")
    if not word.startswith("-") or re.match(r"^-\d", word) or word == "-":
        return None
    return word.split("=", 1)[0]


def problems_in(commands: list[ShownCommand], root_command) -> list[str]:
    """One message per unknown subcommand or option, naming the file, the line and the word."""
    problems = []
    for shown in commands:
        where = f"{shown.file}:{shown.line}: `{shown.text}`"
        first = shown.words[0]
        if first.startswith("-"):
            command, name, rest = root_command, "magicanimate", shown.words
        elif _SUBCOMMAND_WORD.match(first):
            if first not in root_command.commands:
                problems.append(f"{where}: no subcommand {first!r}")
                continue
            command, name, rest = root_command.commands[first], first, shown.words[1:]
        else:
            continue  # a placeholder such as COMMAND or <command>: nothing to check
        known = _options_of(command)
        for word in rest:
            option = _option_name(word)
            if option is not None and option not in known:
                problems.append(f"{where}: {name} has no option {option}")
    return problems


@pytest.fixture(scope="module")
def root_command():
    return typer.main.get_command(app)


def test_every_command_line_in_readme_and_docs_uses_real_subcommands_and_options(root_command):
    subcommands = set(root_command.commands)
    commands = []
    for path in doc_files():
        commands += shown_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), subcommands)
    shown_subcommands = {c.words[0] for c in commands}
    # The pages show every subcommand at least once, so the check covers them all.
    assert subcommands <= shown_subcommands, f"never shown: {sorted(subcommands - shown_subcommands)}"
    assert problems_in(commands, root_command) == []


def test_the_command_line_check_names_the_file_line_and_unknown_option(root_command):
    page = (
        "Intro with `magicanimate pose clip.mp4 -o x.mp4 --bogus-inline` in prose.\n"
        "\n"
        "```bash\n"
        ".venv/bin/magicanimate animate ref.png m.mp4 -o out.mp4 \\\n"
        "    --steps 4 --no-such-flag   # comment --not-parsed\n"
        "torchrun --nproc-per-node 2 -m magicanimate_cli fuse-long a.png b.mp4 -o c.mp4 [--plann]\n"
        "magicanimate animat ref.png m.mp4\n"
        "magicanimate COMMAND --help | grep --count x\n"
        "magicanimate eval GEN GT [--clips 16]\n"
        "                  [--legacy-psnrr] [--csv PATH]\n"
        "```\n"
        "and `download-weights --poze` too.\n"
    )
    commands = shown_commands(page, "docs/x.md", set(root_command.commands))
    assert problems_in(commands, root_command) == [
        "docs/x.md:1: `magicanimate pose clip.mp4 -o x.mp4 --bogus-inline`: pose has no option --bogus-inline",
        "docs/x.md:4: `.venv/bin/magicanimate animate ref.png m.mp4 -o out.mp4      --steps 4 --no-such-flag"
        "   # comment --not-parsed`: animate has no option --no-such-flag",
        "docs/x.md:6: `torchrun --nproc-per-node 2 -m magicanimate_cli fuse-long a.png b.mp4 -o c.mp4 [--plann]`: "
        "fuse-long has no option --plann",
        "docs/x.md:7: `magicanimate animat ref.png m.mp4`: no subcommand 'animat'",
        "docs/x.md:9: `magicanimate eval GEN GT [--clips 16] [--legacy-psnrr] [--csv PATH]`: "
        "eval has no option --legacy-psnrr",
        "docs/x.md:12: `download-weights --poze`: download-weights has no option --poze",
    ]


def test_readme_is_short_enough_to_read_in_minutes():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}); move detail to docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen, in_code = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#{1,6}\s+(.*)$", line)):
            slug = _slug(m.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(path: Path) -> list[tuple[int, str]]:
    links, in_code = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line) + re.findall(r"src=\"([^\"]+)\"", line)
        links += [(number, t) for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return links


def test_every_relative_link_in_readme_and_docs_points_to_an_existing_file_and_heading():
    broken = []
    for path in doc_files():
        for number, target in _relative_links(path):
            file_part, _, anchor = target.partition("#")
            destination = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not destination.is_relative_to(ROOT):
                broken.append(f"{where}: outside the repository")
                continue
            if str(destination.relative_to(ROOT)) in PENDING:
                continue
            if not destination.exists():
                broken.append(f"{where}: no such file")
            elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
                broken.append(f"{where}: no heading #{anchor} in {destination.relative_to(ROOT)}")
    assert broken == []
