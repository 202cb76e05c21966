"""``snep demo``: the failover demo in network namespaces (see snep.lab.demo)."""

from __future__ import annotations

import argparse

from snep.lab import aa_demo, demo, netns


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tcp", type=int, default=20, help="long-lived TCP connections (default 20)")
    parser.add_argument("--udp", type=int, default=4, help="UDP flows (default 4)")
    parser.add_argument("--watch", type=float, help="seconds watched after the failure, at least (default 8; 6 with --active-active): longer when the takeover missed a TCP retransmission, until the next one")
    parser.add_argument("--no-compare", action="store_true", help="skip the run without snep")
    parser.add_argument(
        "--active-active",
        action="store_true",
        help="both firewalls forward (one VRRP group each); fw1 fails and returns (watch default 6 s)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="fw2 writes the synced states into its kernel only at the takeover (inject_on_arrival = false); "
        "by default it writes them as they arrive",
    )
    parser.add_argument(
        "--advert-int",
        type=float,
        default=1.0,
        help="keepalived's advertisement interval in seconds (default 1; below 1, e.g. 0.1: VRRPv3, fast detection)",
    )


def main(args: argparse.Namespace) -> int:
    reason = netns.available()
    if reason:
        print(f"snep demo: cannot build network namespaces here: {reason}")
        return 1
    if args.active_active:
        if args.cold:
            print("snep demo: --cold has no meaning with --active-active (the peers' states are always in the kernel)")
            return 2
        aa = aa_demo.run_demo(tcp=args.tcp, udp=args.udp, watch=args.watch or 6.0, compare=not args.no_compare,
                              advert_int=args.advert_int)
        ok, total = aa[0].survived
        return 0 if ok == total else 1
    results = demo.run_demo(
        tcp=args.tcp, udp=args.udp, watch=args.watch or 8.0, compare=not args.no_compare, inject=False if args.cold else None, advert_int=args.advert_int
    )
    with_snep = results[0]
    return 0 if with_snep.flows.tcp_after == with_snep.flows.tcp_total else 1
