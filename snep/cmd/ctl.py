"""``snep ctl``: talk to a running node over its control socket.

Exit status: 0 on success; 1 when the node refused or failed the command (or, for
``ready``, when the node is not in sync); 2 when the node cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from snep.paths import CONTROL_SOCKET as DEFAULT_CONTROL_SOCKET
from snep.runtime.client import ControlError, request

COMMANDS = {
    "status": "role, epoch, peers and their liveness, counters",
    "internal": "list the internal cache (what this node's kernel holds)",
    "external": "list the external cache (what peers told this node)",
    "commit": "write the external cache into the kernel",
    "flush": "empty the caches: [internal|external|all] (default all)",
    "resync": "reload the internal cache from a kernel dump",
    "bulk": "send the whole internal cache to the peers",
    "request-resync": "ask the peers for a full dump (asked again every sync.resync_retry until one has come)",
    "shorten-timeouts": "shorten the kernel entries' timeouts: [SECONDS]",
    "stats": "counters: messages, bytes, retransmissions, NACKs, errors ...",
    "ready": "exit 0 only when the node is in sync (for keepalived's track_script)",
    "notify": "role change from the HA manager: primary|backup|fault",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=DEFAULT_CONTROL_SOCKET, help=f"control socket (default {DEFAULT_CONTROL_SOCKET})")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    parser.add_argument(
        "command", metavar="COMMAND", help="; ".join(f"{name}: {text}" for name, text in COMMANDS.items())
    )
    parser.add_argument("argv", nargs="*", metavar="ARG", help="the command's arguments")


def main(args: argparse.Namespace) -> int:
    try:
        result = request(args.socket, args.command, {"argv": args.argv}, timeout=args.timeout)
    except ControlError as error:
        unreachable = "cannot connect" in str(error) or "no control socket" in str(error)
        print(f"snep ctl: {error}", file=sys.stderr)
        return 2 if unreachable else 1
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        print(render(args.command, result))
    if args.command == "ready":
        return 0 if isinstance(result, dict) and result.get("ready") else 1
    return 0


def render(command: str, result: Any) -> str:
    """Readable text for a terminal."""
    if command in ("internal", "external") and isinstance(result, dict):
        lines = list(result.get("entries", []))
        lines.append(f"{result.get('count', len(lines))} entries")
        return "\n".join(lines)
    if command == "ready" and isinstance(result, dict):
        return f"{'ready' if result.get('ready') else 'not ready'} (role {result.get('role')})"
    if isinstance(result, dict):
        return "\n".join(_flatten(result))
    if result is None:
        return "ok"
    return str(result)


def _flatten(value: dict[str, Any], prefix: str = "") -> list[str]:
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{prefix}{key}:")
            lines.extend(_flatten(item, prefix + "  "))
        elif isinstance(item, list):
            lines.append(f"{prefix}{key}: {', '.join(str(x) for x in item) if item else '-'}")
        else:
            lines.append(f"{prefix}{key}: {item}")
    return lines
