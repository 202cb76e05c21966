"""``snep config import-conntrackd CONNTRACKD.CONF [-o FILE]``: bring a conntrackd setup over.

Writes the snep.toml equivalent to a conntrackd.conf (snep.migrate.conntrackd) and
prints on stderr, one line each, ``FILE:LINE: KIND: why`` for what has no equivalent
(not carried), what must be replaced (placeholder) and what snep does otherwise (note).
The written config is valid (`snep run --check` accepts it); conntrackd knows nothing
of node ids, multicast peers or keys, so those come from the options.

Exit status: 0 the config was written; 1 the file could not be read or converted
(syntax error with its line, no Sync section, FILE exists without --force).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snep.errors import ConfigError
from snep.migrate.conntrackd import Options, import_file


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UDP port (1..65535)")
    return int(text)


def _node_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 0xFFFF_FFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not a node id (1..4294967295)")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import-conntrackd",
        help="write the snep.toml equivalent to a conntrackd.conf; say what did not carry over",
    )
    imp.add_argument("conntrackd_conf", metavar="CONNTRACKD.CONF", help="e.g. /etc/conntrackd/conntrackd.conf")
    imp.add_argument("-o", "--output", metavar="FILE", help="write the config to FILE (default: standard output)")
    imp.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    imp.add_argument("--node-id", type=_node_id, metavar="N", help="this node's id, unique in the cluster (default 1)")
    imp.add_argument("--peer", action="append", default=[], metavar="ADDRESS[:PORT]",
                     help="a peer on the main sync link (repeatable); needed for multicast, which names none")
    imp.add_argument("--second-link-peer", action="append", default=[], metavar="ADDRESS[:PORT]",
                     help="a peer on the second sync link, in the order of --peer (repeatable)")
    imp.add_argument("--port", type=_port, metavar="PORT",
                     help="UDP port instead of conntrackd's (to run beside conntrackd during a migration)")
    imp.add_argument("--key-file", metavar="PATH", help="the pre-shared key file (conntrackd has no authentication)")


def main(args: argparse.Namespace) -> int:
    options = Options(node_id=args.node_id, peers=tuple(args.peer), second_link_peers=tuple(args.second_link_peer),
                      port=args.port, key_file=args.key_file)
    imported = import_file(args.conntrackd_conf, options)  # ConfigError: "snep config: error: ...", exit 1
    for line in imported.report(args.conntrackd_conf):
        print(line, file=sys.stderr)
    if not args.output:
        sys.stdout.write(imported.toml)
        return 0
    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists (--force overwrites it)")
    out.write_text(imported.toml)
    print(f"{out}: written (check it with: snep run --check --config {out})")
    return 0
