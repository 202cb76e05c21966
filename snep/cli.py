"""The ``snep`` command: one subcommand per module of ``snep.cmd``.

Each subcommand module defines ``add_arguments(parser)`` and ``main(args) -> int``.
Modules are imported only when their subcommand runs, so ``snep --help`` stays fast
and one subsystem's import cost (graphviz for `snep diagram` ...) is paid only where needed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from snep import __version__
from snep.errors import SnepError

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
SOURCE_TREE = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snep",
        description="Verified conntrack state synchronization for HA stateful firewalls.",
    )
    parser.add_argument("--version", action="version", version=f"snep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, summary) in SUBCOMMANDS.items():
        sub.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        args = parser.parse_args(argv)  # --help, --version, or a clear usage error
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    module_name, summary = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"snep {name}", description=summary)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    if name in NEEDS_SOURCE and not (SOURCE_TREE / NEEDS_SOURCE[name][0]).is_dir():
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
