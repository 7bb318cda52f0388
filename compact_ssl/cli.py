"""Entry points with sub-commands (``python -m pkg.bin.area COMMAND [options]``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping


def command_parser(prog: str, command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of one sub-command: ``prog command`` in its usage line, ``doc`` as its help."""
    return argparse.ArgumentParser(prog=f"{prog} {command}".strip(), description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def dispatch(prog: str, doc: str | None, commands: Mapping[str, Callable[[list[str]], int]],
             argv: list[str] | None = None) -> int:
    """Run the sub-command named by the first argument with the rest; returns its exit status.

    ``--help`` (or no argument) lists the sub-commands with ``doc``; an unknown name is refused
    with the choices.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = command_parser(prog, "", doc)
    parser.add_argument("command", choices=list(commands), help="the sub-command; its options follow it")
    return commands[parser.parse_args(argv[:1]).command](argv[1:])
