"""Command lines that run without click: ``sevlaunch --help`` and a plain ``owner digest``.

Importing click alone costs about three bare interpreter start-ups, more than the whole work
of a firmware digest or of printing the command list. A script that hashes images in a loop,
or a person asking for help, should pay what a single-purpose tool pays. So these two take
the command line when they can read all of it from the same tables the click commands are
built from (:mod:`sevlaunch.cli._commands`, :mod:`sevlaunch.cli._measure`) and print
what click would print, byte for byte (``tests/cli/test_fast.py`` compares them at many
terminal widths). Anything else (an option they do not know, one given twice, a missing
value, a value that looks like an option, a directory, an unreadable file, input the
measurement refuses, help that would need wrapping) is left to click from the start, so
every message and exit status is click's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # as typing's, without importing typing for --help
if TYPE_CHECKING:
    from sevlaunch.cli._measure import Opt as _Opt

HELP_FLAGS = ("-h", "--help")
MAX_WIDTH = 80  # click's default max_content_width


def run(argv: Sequence[str]) -> int | None:
    """The exit status of a command line handled here, or None to hand it to click."""
    args = list(argv[1:])
    if len(args) == 1 and args[0] in HELP_FLAGS:
        return _print(root_help(os.path.basename(argv[0])))
    if args[:2] == ["owner", "digest"]:
        return _print(owner_digest(args[2:]))
    return None


def _print(text: str | None) -> int | None:
    if text is None:
        return None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return 0


# ---- sevlaunch --help


def help_width() -> int:
    """The width click lays help out in: the terminal's, at most 80, less 2, at least 50."""
    import shutil

    return max(min(shutil.get_terminal_size().columns, MAX_WIDTH) - 2, 50)


def short_help(text: str, limit: int) -> str:
    """The command list's summary of ``text``: its first sentence (a period before a word that
    does not start in lowercase, or at the end), whole if it fits in ``limit`` characters,
    else the words that fit with "..." after them."""
    words = text.split()
    for index, word in enumerate(words):
        follows = words[index + 1] if index + 1 < len(words) else ""
        if word.endswith(".") and not follows[:1].islower():
            words = words[: index + 1]
            break
    if len(" ".join(words)) <= limit:
        return " ".join(words)
    while words and len(" ".join(words)) + 3 > limit:
        words.pop()
    return " ".join(words) + "..."


def root_help(prog: str, width: int | None = None) -> str | None:
    """``sevlaunch --help``, or None when click would word-wrap it (a narrow terminal)."""
    import importlib.util

    from sevlaunch.cli._commands import COMMANDS, PROG, ROOT_HELP

    width = help_width() if width is None else width
    if prog != PROG or len(ROOT_HELP) + 2 > width:
        return None
    names = sorted(n for n, (t, _) in COMMANDS.items() if importlib.util.find_spec(t.split(":")[0]))
    limit = width - 6 - max(len(n) for n in names)
    options = _rows(
        [
            ("--version", "Show the version and exit."),
            ("-h, --help", "Show this message and exit."),
        ],
        width,
    )
    commands = _rows([(n, short_help(COMMANDS[n][1], limit)) for n in names], width)
    if options is None or commands is None:
        return None
    usage = f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]..."
    return "\n".join(
        [usage, "", f"  {ROOT_HELP}", "", "Options:", *options, "", "Commands:", *commands]
    )


def _rows(rows: list[tuple[str, str]], width: int) -> list[str] | None:
    """A two-column section indented by 2; None when a second column would wrap."""
    first = min(max(len(name) for name, _ in rows), 30) + 2
    if any(len(name) > first - 2 or len(text) > max(width - first - 2, 10) for name, text in rows):
        return None
    return [f"  {name:<{first}}{text}".rstrip() for name, text in rows]


# ---- sevlaunch owner digest


def owner_digest(args: Sequence[str]) -> str | None:
    """The digest of a plain SEV launch (firmware, optional direct boot), or None."""
    from sevlaunch.cli import _measure
    from sevlaunch.errors import SevlaunchError

    values = parse(args, (_measure.FIRMWARE, *_measure.DIRECT_BOOT, _measure.OUTPUT_FORMAT))
    if values is None or "firmware" not in values:
        return None
    output = values.get("output_format", _measure.OUTPUT_FORMAT.default or "")
    if output not in _measure.OUTPUT_FORMAT.choices:
        return None
    for dest in ("firmware", "kernel", "initrd"):
        if dest in values and os.path.isdir(values[dest]):
            return None
    try:
        measured, boot = _measure.measure_inputs(
            [values["firmware"]], values.get("kernel"), values.get("initrd"), values.get("append")
        )
        digest = measured[0].digest(boot.hashes() if boot else None, ())
    except SevlaunchError:  # InputError among them: click words the refusal
        return None
    return _measure.format_digest(digest, output)


def parse(args: Sequence[str], options: Sequence[_Opt]) -> dict[str, str] | None:
    """``--name VALUE``, ``--name=VALUE``, ``-n VALUE``, ``-nVALUE`` for the options given,
    each once; None for anything else."""
    by_flag = {decl: opt for opt in options for decl in opt.decls}
    values: dict[str, str] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        flag, value = arg, None
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            flag, value = arg[:2], arg[2:]
        opt = by_flag.get(flag)
        if opt is None or opt.dest in values:
            return None
        if value is None:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        values[opt.dest] = value
    return values
