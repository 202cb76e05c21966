"""The ``snep`` command: one subcommand per module of ``snep.cmd``.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported only when their subcommand runs, so ``snep --help`` stays fast
and one subsystem's import cost (graphviz for `snep diagram` ...) is paid only where needed.
``snep notify`` and ``snep ctl ready`` run on every keepalived transition and every
second: their path imports argparse, json and socket, nothing else of weight (no
pathlib, typing or shutil: ``python -X importtime -m snep notify ...`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from snep import __version__
from snep.errors import SnepError

TYPE_CHECKING = False  # (typing.TYPE_CHECKING: importing typing costs 5 to 8 ms here)
if TYPE_CHECKING:
    from collections.abc import Sequence

#: name -> (module, one-line summary shown by ``snep --help``)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("snep.cmd.run", "run a sync node in the foreground (--config FILE)"),
    "ctl": ("snep.cmd.ctl", "talk to a running node over its control socket"),
    "notify": ("snep.cmd.notify", "tell the local node about a keepalived transition"),
    "config": ("snep.cmd.config", "import a conntrackd.conf into a snep config"),
    "demo": ("snep.cmd.demo", "failover demo in network namespaces, with and without snep"),
    "diagram": ("snep.cmd.diagram", "render the state machines with graphviz"),
    "spec": ("snep.cmd.spec", "model-check the TLA+ spec with TLC, validate traces"),
    "conformance": ("snep.cmd.conformance", "replay the failure scenarios on real kernels"),
    "man": ("snep.cmd.man", "write the manual pages snep(8) and snep.toml(5)"),
}

#: name -> (path in snep's source tree, what it is): what a subcommand needs that an
#: installed package (a wheel carries the snep package only) does not have
NEEDS_SOURCE: dict[str, tuple[str, str]] = {"spec": ("spec", "the TLA+ specification")}
SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


class _Formatter(argparse.HelpFormatter):
    """argparse builds a formatter for every argument it adds (to check its metavar),
    and a formatter asks the terminal's width through shutil (10 ms of imports, bz2 and
    lzma among them): ask os directly, as shutil would."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snep",
        description="Verified conntrack state synchronization for HA stateful firewalls.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"snep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, summary) in SUBCOMMANDS.items():
        sub.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        args = parser.parse_args(argv)  # --help, --version, or a clear usage error
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module_name, summary = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"snep {name}", description=summary, formatter_class=_Formatter)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    if name in NEEDS_SOURCE and not os.path.isdir(os.path.join(SOURCE_TREE, NEEDS_SOURCE[name][0])):
        path, what = NEEDS_SOURCE[name]
        print(f"snep {name}: needs {what} ({path}/ of snep's source tree), which an installed package does "
              f"not carry: run it from a checkout of snep's repository (there: make spec-check)", file=sys.stderr)
        return 1
    try:
        return int(module.main(args) or 0)
    except SnepError as error:
        print(f"snep {name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
