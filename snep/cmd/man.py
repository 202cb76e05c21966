"""``snep man [--out DIR]``: write the manual pages snep(8) and snep.toml(5).

The pages are generated from what they describe: snep(8) from the subcommands
(``snep.cli.SUBCOMMANDS``) and their argparse parsers, every option with its help;
snep.toml(5) from ``config.SETTINGS``, every key with its type, range, default, unit
and meaning. What is written by hand (what a command is for, its exit statuses; what
a section of the config is for) is in :data:`COMMANDS` and :data:`SECTIONS`, keyed by
the subcommand and the section, and tests/test_man.py fails when a subcommand or a
section has no text, or when man/ is not what this writes (``make man``).
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from snep import __version__, config
from snep.config_write import Document, Peer, auth_entries, peers_value, value
from snep.entry import Proto, TcpState
from snep.paths import CONTROL_SOCKET, STATE_FILE
from snep.roff import (
    bold,
    code,
    heading,
    italic,
    item,
    lines,
    literal,
    paragraph,
    prose,
    subheading,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="man", metavar="DIR", help="directory to write snep.8 and snep.toml.5 to (default: man)")


def main(args: argparse.Namespace) -> int:
    for path in write(Path(args.out)):
        print(path)
    return 0


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in pages().items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


def pages() -> dict[str, str]:
    """file name -> roff source."""
    return {"snep.8": snep_8(), "snep.toml.5": snep_toml_5()}


# ---------------------------------------------------------------------------- snep(8)


@dataclass(frozen=True)
class Command:
    """The hand-written part of a subcommand's entry: what it is for, its exit statuses."""

    about: str
    exits: dict[int, str]


COMMANDS: dict[str, Command] = {
    "run": Command(
        "Runs one sync node in the foreground until SIGTERM or SIGINT, the way systemd runs a service: it logs "
        "to standard error (the journal), and a bad config, a sync socket that cannot be bound or a conntrack "
        "table that cannot be opened end it at once with a message. The node loads its internal cache from "
        "a dump of the kernel's table and asks its peers for a resync; keepalived tells it its role through "
        "`snep notify`. With `--check`, it validates the config file and the key file, prints one line and "
        "exits: what the systemd unit runs before it starts the node.",
        {0: "stopped by SIGTERM or SIGINT; with `--check`: the config and the key file are valid",
         1: "the config or the key file is invalid, or the node could not start (the reason on standard error)"},
    ),
    "ctl": Command(
        "Sends one *COMMAND* to a running node over its control socket (mode 0600: root only) and prints the "
        "answer as text, or as JSON with `--json`. The same counters are served in Prometheus text format when "
        "`[metrics] listen` is set.",
        {0: "done", 1: "the node refused or failed the command; for `ready`: the node is not in sync",
         2: "the node cannot be reached (no control socket, nobody listening)"},
    ),
    "notify": Command(
        "keepalived's notify script: one call per transition (MASTER: `primary`, BACKUP: `backup`, FAULT: "
        "`fault`). The node carries out the whole role change, in order, which conntrack-tools' "
        "primary-backup.sh does with several conntrackd calls (commit, flush, resync, bulk send, shorten "
        "timeouts, request a resync), and answers when it is done: when `snep notify primary` returns, the "
        "kernel holds the synchronized connections.",
        {0: "the role change is done", 1: "the node refused it, or cannot be reached"},
    ),
    "config": Command(
        "`import-conntrackd` writes the snep config equivalent to a conntrackd.conf (to standard output, or "
        "to *FILE*), validated as `snep run --check` would, and prints on standard error one line per "
        "statement that did not carry over as it was: `FILE:LINE: not carried|placeholder|note: why`. "
        "conntrackd has no node ids, no peers on a multicast link and no keys: the options give them, or "
        "the config says what was assumed (a placeholder peer is a documentation address, RFC 5737). "
        "docs/migration.md has the table of what maps to what, and the rolling migration of a cluster.",
        {0: "the config was written",
         1: "the file could not be read or converted (a syntax error names its line; a file without a Sync "
            "section is refused), or *FILE* exists and `--force` was not given"},
    ),
    "demo": Command(
        "Builds a client, a server and two firewalls in network namespaces (stateful nftables ruleset, "
        "keepalived, a snep node on each firewall), keeps TCP connections busy, kills the primary and prints "
        "how many connections survived and how long the data stream paused; then the same without snep. "
        "Needs root; removes everything it created, also on Ctrl-C.",
        {0: "every connection survived with snep", 1: "some did not, or the namespaces could not be built"},
    ),
    "diagram": Command(
        "Draws the role, sync sender and sync receiver state machines from the live tables with graphviz, and "
        "writes each machine's DOT source *NAME*`.gv` beside the image.",
        {0: "written", 1: "graphviz's `dot` is not installed (for an image format)"},
    ),
    "spec": Command(
        "Model-checks the TLA+ specification with TLC (found through `TLA2TOOLS_JAR`), or checks a trace of the "
        "model tests against it. Needs the specification, spec/ of snep's source tree: an installed package "
        "does not carry it.",
        {0: "every model gave its expected verdict", 1: "one did not, or spec/ is not there",
         3: "TLC cannot run (`TLA2TOOLS_JAR` unset or unreadable, no java)"},
    ),
    "conformance": Command(
        "Replays the failure scenarios on real kernels, in network namespaces with nftables, keepalived and real "
        "traffic, for snep, conntrackd (the reference) and no synchronization at all (which must fail), side "
        "by side; `migrate-from-conntrackd` moves a conntrackd cluster to snep one node at a time. Needs root. "
        "docs/conformance.md describes the scenarios and what is measured.",
        {0: "every scenario passed (no synchronization is expected to fail)",
         1: "a scenario broke, or an implementation other than `none` failed one",
         2: "not root, or an unknown scenario"},
    ),
    "man": Command(
        "Writes this page and snep.toml(5), generated from the command-line parsers and the config schema, "
        "into *DIR* (`make man` writes the project's man/).",
        {0: "written"},
    ),
}

DESCRIPTION = (
    "snep keeps the connection-tracking (conntrack) state of Linux stateful firewalls synchronized across a "
    "high-availability cluster, so that when the primary fails, the backup that takes over already knows "
    "every established connection. It does what conntrackd(8) does, with a model-checked TLA+ specification, "
    "fencing of stale primaries by epochs, authenticated sync traffic and clusters of more than two nodes.",
    "Each firewall runs one node (`snep run`, usually as the systemd unit snep.service); an HA manager such as "
    "keepalived(8) decides which firewall is primary and tells the node (`snep notify`). The primary streams "
    "the changes of its kernel's conntrack table to the backups over UDP (acknowledged, with retransmission "
    "and resynchronization); a backup keeps them and writes them into its kernel when it becomes primary.",
)

FILES = {
    "/etc/snep/snep.toml": "the node's configuration, snep.toml(5)",
    "/etc/snep/key": "the pre-shared keys of the sync traffic, mode 0600 (snep.toml(5), KEY FILE)",
    CONTROL_SOCKET: "the control socket of `snep ctl` and `snep notify` (`[control] socket`)",
    STATE_FILE: "the newest epoch the node has seen, kept across restarts (`[node] state_file`)",
    "snep.service": "the systemd unit (`make install` puts it in *PREFIX*`/lib/systemd/system`)",
    "keepalived.conf": "an example keepalived configuration with snep's notify and track scripts "
                       "(*PREFIX*`/share/doc/snep/examples`)",
}

SIGNALS = {
    "SIGHUP": "`snep run` re-reads its config file: the key file and the filter take effect at once (other "
              "changes need a restart: the log names their sections); `systemctl reload snep` sends it. A config that no longer validates is "
              "logged and the running key and filter are kept.",
    "SIGTERM, SIGINT": "`snep run` stops cleanly: sockets closed, control socket removed (the epoch is "
                       "persisted on every change already).",
}

ENVIRONMENT = {
    "TLA2TOOLS_JAR": "the TLA+ tools (tla2tools.jar) `snep spec` runs TLC from",
    "SNEP_PROFILE": "a file: `snep run` writes cProfile statistics there when it stops (benchmarks)",
}

EXAMPLES = """\
# check a config and its key file, as the systemd unit does
snep run --check --config /etc/snep/snep.toml
systemctl enable --now snep

# the node's role, epoch, peers and cache sizes; its counters for scripts
snep ctl status
snep ctl --json stats

# keepalived: notify_master, and a track script that keeps an unsynced node out of elections
snep notify primary
snep ctl ready

# a conntrackd.conf brought over (docs/migration.md)
snep config import-conntrackd /etc/conntrackd/conntrackd.conf \\
    --node-id 2 --key-file /etc/snep/key -o /etc/snep/snep.toml
"""


def _parser(name: str) -> argparse.ArgumentParser:
    """The subcommand's parser, built as `snep` builds it."""
    from snep.cli import SUBCOMMANDS

    module_name, summary = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"snep {name}", description=summary)
    importlib.import_module(module_name).add_arguments(parser)
    return parser


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(re.sub(r"\s\[-h\]", "", parser.format_usage().removeprefix("usage: ")).split())


def _options(parser: argparse.ArgumentParser, listed: tuple[str, ...] = ()) -> list[str]:
    """One tagged paragraph per argument (sub-actions with their own arguments, nested);
    ``listed``: arguments whose values the page lists elsewhere."""
    formatter = parser._get_formatter()
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = _metavar(action)
        if action.dest in listed:
            out.append(item(italic(name), "one of the commands above"))
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                out.append(item(bold(_usage(sub).removeprefix(parser.prog + " ")), helps.get(name, "")))
                inner = _options(sub)
                if inner:
                    out += [".RS", *inner, ".RE"]
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        if action.option_strings:
            tag = ", ".join(bold(option) for option in action.option_strings)
            if action.nargs != 0 and action.choices and not action.metavar:
                tag += " " + "|".join(bold(str(choice)) for choice in action.choices)
            elif action.nargs != 0:
                tag += " " + italic(name)
        else:
            tag = italic(name)
            if action.choices and not action.metavar:
                tag = " | ".join(bold(str(choice)) for choice in action.choices)
        out.append(item(tag, help_text))
    return out


def _metavar(action: argparse.Action) -> str:
    """What stands for the argument's value (argparse's METAVAR, else its name)."""
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper() if action.option_strings else action.dest


def _ctl_commands() -> list[str]:
    from snep.cmd.ctl import COMMANDS as CTL

    return [paragraph("*COMMAND* is one of:"), *(item(bold(name), text) for name, text in CTL.items())]


def snep_8() -> str:
    from snep.cli import SUBCOMMANDS

    missing = set(SUBCOMMANDS) ^ set(COMMANDS)
    if missing:
        raise KeyError(f"snep.cmd.man.COMMANDS and snep.cli.SUBCOMMANDS differ: {sorted(missing)}")
    chunks = [
        f'.TH SNEP 8 "" "snep {__version__}" "System Manager\'s Manual"',
        ".ad l\n.nh",
        heading("name"),
        "snep \\- verified conntrack state synchronization for highly available stateful firewalls",
        heading("synopsis"),
        f"{bold('snep')} {italic('COMMAND')} [{italic('OPTION')}]...\n.br\n{bold('snep --version')}",
        heading("description"),
        *(paragraph(text) for text in DESCRIPTION),
        heading("commands"),
    ]
    for name, (_module, summary) in SUBCOMMANDS.items():
        parser = _parser(name)
        command = COMMANDS[name]
        chunks += [subheading(f"snep {name}"), f".PP\n{bold(_usage(parser))}", paragraph(f"{summary[0].upper()}{summary[1:]}."),
                   paragraph(command.about)]
        if name == "ctl":
            chunks += _ctl_commands()
        options = _options(parser, listed=("command",) if name == "ctl" else ())
        if options:
            chunks += [paragraph("Options and arguments:"), *options]
    chunks.append(heading("exit status"))
    chunks.append(paragraph("Every command exits with 2 on a usage error (unknown option, missing argument)."))
    for name, command in COMMANDS.items():
        text = "; ".join(f"{status}: {meaning}" for status, meaning in sorted(command.exits.items()))
        chunks.append(item(bold(f"snep {name}"), text + "."))
    chunks.append(heading("files"))
    chunks += [item(bold(path), text + ".") for path, text in FILES.items()]
    chunks.append(heading("signals"))
    chunks += [item(bold(name), text) for name, text in SIGNALS.items()]
    chunks.append(heading("environment"))
    chunks += [item(bold(name), text + ".") for name, text in ENVIRONMENT.items()]
    chunks += [heading("examples"), literal(EXAMPLES)]
    chunks += [heading("see also"), prose("snep.toml(5), keepalived(8), keepalived.conf(5), conntrackd(8), "
                                          "conntrack(8), systemd.service(5); in the source: README.md, docs/.")]
    return lines(*chunks)


# ---------------------------------------------------------------------------- snep.toml(5)

SECTIONS: dict[str, str] = {
    "node": "This node: its id, where it keeps its epoch, how much it logs.",
    "sync": "The sync link, its peers and the protocol's tunables. Frames go over UDP to each peer, or once "
            "to `multicast_group`; every frame carries the sender's epoch, and with a key file, a MAC.",
    "sync.second_link": "An optional redundant sync link (conntrackd's second dedicated link). Frames go over "
                        "the main link, and over this one when the main link fails or falls silent, back "
                        "on the main link as soon as a peer is heard there again (probed with empty datagrams); the "
                        "peers are the same nodes as on the main link.",
    "kernel": "The conntrack table: the netlink event socket's buffer, and what the node writes into the "
              "kernel and when.",
    "filter": "Which connections are synchronized. The sync links' own addresses are always ignored (the sync "
              "traffic is conntracked like any other). `SIGHUP` re-reads this section.",
    "control": "The control socket of `snep ctl` and `snep notify`.",
    "cluster": "How the nodes share the traffic. `primary-backup` (the default): one node forwards and the "
               "others keep its connections. `active-active`: every node forwards, as the master of one VRRP "
               "group; a connection belongs to the group its conntrack mark names (the firewall's rules set "
               "it on the connection's first packet), each group is synchronized by its own primary/backup "
               "instance on its own ports (the sync ports + the group's index), and every node's kernel holds "
               "the other groups' connections, so that a takeover commits nothing. Needs `[ha] notify_fifo`: "
               "each group follows its own sync group or instance (docs/active-active.md).",
    "cluster.defer": "Active-active: a new connection's first packet, queued by the firewall's rules to an "
                     "NFQUEUE, is held until every live peer has the connection's state (or the bound passes), "
                     "so that its reply may come back through another firewall (OpenBSD pfsync's defer).",
    "ha": "The HA manager's transitions read from keepalived's notify FIFO in the node's own event loop, "
          "instead of a `snep notify` process per transition: keepalived writes a line such as "
          "`GROUP \"G\" MASTER 100` for each transition, and the node acts on those of the sync group or "
          "instance it follows (MASTER: primary, BACKUP: backup, FAULT: fault, STOP and DELETED: backup). Other "
          "lines are counted (`ha_fifo_ignored`); lines that are not keepalived's are counted "
          "(`ha_fifo_bad_lines`) and logged at most once a second.",
    "metrics": "Counters in Prometheus text format, over HTTP; off unless `listen` is set.",
}


def _kind(setting: config.Setting) -> str:
    """What a key's value is, in roff: its words, its unit, or its type."""
    if setting.choices:
        return " | ".join(bold(choice) for choice in setting.choices)
    if isinstance(setting.default, bool):
        return f"{bold('true')} | {bold('false')}"
    if setting.unit:
        return italic(setting.unit)
    if setting.low is not None:
        return italic("number" if isinstance(setting.default, float) else "integer")
    return italic("string" if isinstance(setting.default, str) else "array" if isinstance(setting.default, list) else "value")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _key(setting: config.Setting) -> str:
    facts = []
    if setting.low is not None and setting.high is not None:
        facts.append(f"range {_number(setting.low)}..{_number(setting.high)}")
    if setting.required:
        facts.append("required")
    elif setting.default is None:
        facts.append("optional")
    else:
        facts.append(f"default `{value(setting.default)}`")
    about = setting.about[0].upper() + setting.about[1:]
    return item(f"{bold(setting.key)} = {_kind(setting)}", f"{about}. ({'; '.join(facts)}.)")


def example() -> str:
    """A two-node example, written the way the importer writes configs (peers, key)."""
    doc = Document(header=["fw1 of two; fw2 swaps the addresses and takes id = 2"])
    doc.set("node", "id", 1)
    doc.set("sync", "listen", "192.168.100.1:3780")
    doc.set("sync", "peers", peers_value([Peer(2, "192.168.100.2:3780")]))
    for key, item_value, comment in auth_entries("/etc/snep/key"):
        doc.set("sync", key, item_value, comment)
    doc.set("filter", "ignore", ["127.0.0.0/8", "::1/128", "10.1.0.254/32", "10.2.0.254/32"])
    return doc.render()


def snep_toml_5() -> str:
    sections = list(dict.fromkeys(s.section for s in config.SETTINGS))
    missing = set(sections) ^ set(SECTIONS)
    if missing:
        raise KeyError(f"snep.cmd.man.SECTIONS and config.SETTINGS' sections differ: {sorted(missing)}")
    protocols = ", ".join(code(p.name.lower()) for p in Proto)
    states = ", ".join(code(s.name) for s in TcpState if s is not TcpState.NONE)
    chunks = [
        f'.TH SNEP.TOML 5 "" "snep {__version__}" "File Formats Manual"',
        ".ad l\n.nh",
        heading("name"),
        "snep.toml \\- configuration of a snep sync node",
        heading("synopsis"),
        bold("/etc/snep/snep.toml"),
        heading("description"),
        paragraph("The configuration of `snep run` (snep(8)), in TOML. The node reads it whole when it starts "
                  "and refuses it, with a message that names the file, the key and the reason, if anything is "
                  "wrong: an unknown key (a typo must not fall back to a default), a value of the wrong type or "
                  "out of range, a bad address, a missing, unreadable or world-readable key file. "
                  "`snep run --check --config FILE` checks a file without starting a node. `SIGHUP` re-reads "
                  "the key file and the filter; everything else needs a restart."),
        paragraph("Below, every key of every section with its value, range and default. A key that is not "
                  "given has its default; the defaults are the safe ones for a firewall."),
    ]
    for section in sections:
        chunks += [subheading(f"[{section}]"), paragraph(SECTIONS[section])]
        chunks += [_key(s) for s in config.SETTINGS if s.section == section]
    chunks += [
        heading("addresses"),
        paragraph("An address is a string \"*ADDRESS*:*PORT*\": `192.168.100.1:3780`, `[fd00::1]:3780`, or with "
                  "the interface of an IPv6 link-local address, `[fe80::1%sync0]:3780`. The port may be left out "
                  f"(`{config.DEFAULT_PORT}`; for `[metrics] listen`, `9477`). A link's peers have the family of its "
                  "`listen` address. On a unicast link, frames go to each peer; with `multicast_group`, they go "
                  "once to the group, and the peers say who may speak: a frame from anyone else is dropped."),
        heading("filter"),
        paragraph(f"`protocols` names protocols among {protocols}. `ignore` holds addresses and prefixes "
                  "(`192.168.0.0/24`, `fd00::/64`; host bits must be zero): a connection from or to one of them "
                  f"is never synchronized. `tcp_states` names TCP states among {states}: a TCP connection is "
                  "synchronized only in those."),
        heading("key file"),
        paragraph("One key per line, `KEY_ID HEX_SECRET`: an id 0..255 and a secret of at least 16 bytes in hex "
                  "(`openssl rand -hex 32`); `#` starts a comment. The file must be a regular file, not readable "
                  "or writable by others (mode 0600). The node sends with the highest id and accepts every key "
                  "in the file, so a key is rotated by adding the new one on every node first (`SIGHUP`), then "
                  "removing the old one."),
        heading("example"),
        literal(example()),
        paragraph("contrib/snep.toml in the source shows every key with its default; "
                  "`snep config import-conntrackd` writes a config from a conntrackd.conf (snep(8))."),
        heading("see also"),
        prose("snep(8), conntrackd.conf(5), keepalived.conf(5)"),
    ]
    return lines(*chunks)

