"""``snep run --config FILE``: one sync node in the foreground, systemd style.

Logs go to stderr; a bad config, a socket that cannot be bound or a kernel that cannot
be opened end the process at once with a clear message and a non-zero status.
"""

from __future__ import annotations

import argparse

from snep import config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the node's TOML config (see contrib/snep.toml)")
    parser.add_argument("--check", action="store_true", help="validate the config (and key file) and exit")


def main(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)  # ConfigError -> "snep run: error: FILE: key: reason", exit 1
    if args.check:
        from snep.runtime.keys import load_keyring
        from snep.runtime.statefile import read_epoch

        if cfg.sync.key_file is not None:
            load_keyring(cfg.sync.key_file)
        read_epoch(cfg.state_file)
        sealing = "sealed" if cfg.sync.key_file is not None else "INSECURE: not sealed"
        for warning in config.warnings(cfg):
            print(f"{args.config}: warning: {warning}")
        print(f"{args.config}: ok (node {cfg.node_id}, level {cfg.sync.params.level.value}, {sealing})")
        return 0
    from snep.runtime.daemon import main as run_daemon

    return run_daemon(cfg)
