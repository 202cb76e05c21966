"""``snep notify primary|backup|fault``: keepalived's notify script, one call per transition.

What conntrack-tools' primary-backup.sh does with several conntrackd calls (commit,
flush, resync, bulk send / shorten timeouts, request resync) the node does as one
role change, in the right order, and answers when it is done: on ``primary`` the
commit into the kernel has finished when this command returns, so keepalived's
virtual addresses come up on a kernel that already knows the connections.
"""

from __future__ import annotations

import argparse
import sys

from snep.paths import CONTROL_SOCKET as DEFAULT_CONTROL_SOCKET
from snep.runtime.client import ControlError, request

ROLES = ("primary", "backup", "fault")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=ROLES, help="the state keepalived entered (MASTER -> primary)")
    parser.add_argument("--group", type=lambda text: int(text, 0), metavar="MARK",
                        help="active-active: the group (its ct mark) whose VRRP transition this is")
    parser.add_argument("--socket", default=DEFAULT_CONTROL_SOCKET, help=f"control socket (default {DEFAULT_CONTROL_SOCKET})")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the node")


def main(args: argparse.Namespace) -> int:
    try:
        argv = [args.role] + ([str(args.group)] if args.group is not None else [])
        result = request(args.socket, "notify", {"argv": argv}, timeout=args.timeout)
    except ControlError as error:
        print(f"snep notify {args.role}: {error}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{k}={v}" for k, v in (result or {}).items()) if isinstance(result, dict) else result
    print(f"snep notify {args.role}: {summary}")
    return 0
