"""``snep config import-conntrackd``: conntrackd.conf read as conntrackd reads it, turned
into a snep config that ``snep run --check`` accepts, with every line that did not carry
over named; on the examples Debian's conntrackd ships, on the configs the conformance
suite gives conntrackd, and on a file that uses every kind of statement."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from snep import config
from snep.errors import ConfigError
from snep.lab.conformance.impls import conntrackd_conf
from snep.lab.topology import Topology
from snep.migrate import conntrackd_conf as syntax
from snep.migrate.conntrackd import (
    HANDLERS,
    NOT_CARRIED,
    NOT_CARRIED_WHY,
    NOTE,
    NOTED_WHY,
    PLACEHOLDER,
    Options,
    import_text,
)
from tests.configs import peer_addresses

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = Path("/usr/share/doc/conntrackd/examples")


def snep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snep.cli", *args], capture_output=True, text=True, timeout=60)


def run_check(path: Path) -> None:
    result = snep("run", "--check", "--config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def notes(imported, kind: str | None = None) -> dict[int, list[str]]:
    """line -> note texts (of one kind)."""
    found: dict[int, list[str]] = {}
    for note in imported.notes:
        if kind is None or note.kind == kind:
            found.setdefault(note.line, []).append(note.text)
    return found


# ---------------------------------------------------------------- Debian's examples


def example_files() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(EXAMPLES.rglob("conntrackd.conf*"))


def read_example(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


@pytest.mark.parametrize("path", [p for p in example_files() if "/sync/" in str(p)] or
                         [pytest.param(None, marks=pytest.mark.skip("conntrackd's examples are not installed "
                                                                    "(Debian package conntrackd)"))],
                         ids=lambda p: str(p.relative_to(EXAMPLES)) if p else "none")
def test_debian_sync_examples_import_into_configs_run_check_accepts(path: Path, tmp_path: Path) -> None:
    source = tmp_path / "conntrackd.conf"
    source.write_text(read_example(path))
    out = tmp_path / "snep.toml"
    result = snep("config", "import-conntrackd", str(source), "-o", str(out))
    assert result.returncode == 0, result.stderr
    run_check(out)
    report = result.stderr.splitlines()
    assert all(re.match(rf"{re.escape(str(source))}(:\d+)?: (not carried|placeholder|note): ", line)
               for line in report), report
    # the examples multicast and name no peers: the placeholder is written and named
    assert any(': placeholder: [sync] peers: "192.0.2.2:3780" stands in' in line for line in report), report
    assert peer_addresses(config.load(out).sync.link) == ["192.0.2.2:3780"]
    data = tomllib.loads(out.read_text())
    assert data["sync"]["multicast_group"] == "225.0.0.50" and data["sync"]["interface"] == "eth2"
    assert data["sync"]["listen"] == "192.168.100.100:3780"
    assert data["filter"]["protocols"] == ["dccp", "sctp", "tcp"]
    assert "192.168.100.100/32" in data["filter"]["ignore"]
    assert data["kernel"] == {"netlink_buffer": 2097152, "netlink_buffer_max": 8388608}
    assert any("not carried: HashLimit 131072" in line for line in report)


def test_the_stats_example_is_refused_clearly(tmp_path: Path) -> None:
    stats = [p for p in example_files() if "/stats/" in str(p)]
    if not stats:
        pytest.skip("conntrackd's examples are not installed (Debian package conntrackd)")
    source = tmp_path / "conntrackd.conf"
    source.write_text(read_example(stats[0]))
    result = snep("config", "import-conntrackd", str(source))
    assert result.returncode == 1 and result.stdout == ""
    assert "no Sync section: this conntrackd does not synchronize" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the conformance suite's configs


@pytest.mark.parametrize("links", [1, 2])
def test_the_conformance_suites_conntrackd_configs_import(links: int, tmp_path: Path) -> None:
    topo = Topology(2, sync_links=links, workdir=tmp_path)  # not entered: no namespaces, only its plan
    fw = topo.fw(2)
    imported = import_text(conntrackd_conf(topo, fw), "fw2.conf", Options(node_id=2, port=3781))
    data = tomllib.loads(imported.toml)
    assert data["node"] == {"id": 2}
    cfg = imported.config
    assert data["sync"]["listen"] == "10.99.0.2:3781" and peer_addresses(cfg.sync.link) == ["10.99.0.1:3781"]
    assert data["sync"]["interface"] == "y0" and data["sync"]["socket_buffer"] == 8388608
    if links == 2:
        second = data["sync"]["second_link"]
        assert second["listen"] == "10.98.0.2:3781" and second["interface"] == "z0"
        assert cfg.sync.second_link is not None and peer_addresses(cfg.sync.second_link) == ["10.98.0.1:3781"]
    else:
        assert "second_link" not in data["sync"]
    assert data["filter"]["protocols"] == ["tcp", "udp"]
    assert {"10.1.0.254/32", "10.2.0.254/32", "10.99.0.2/32"} <= set(data["filter"]["ignore"])
    assert data["control"]["socket"] == str(fw.dir / "snep.sock")  # beside conntrackd's, never the same
    assert not notes(imported, PLACEHOLDER)
    (tmp_path / "snep.toml").write_text(imported.toml)
    run_check(tmp_path / "snep.toml")


# ---------------------------------------------------------------- every kind of statement

EVERYTHING = """\
# every kind of statement conntrackd takes, with its odd spellings
Sync {
    Mode FTFW {
        ResendQueueSize 131072
        CommitTimeout 180
        PurgeTimeout 30
        ACKWindowSize 300
        DisableExternalCache on
        StartupResync yes
    }
    UDP {
        IPv6_address fe80::1
        IPv6_Destination_Address fe80::2
        Port 3790
        Interface sync1
        SndSocketBuffer 65536
        RcvSocketBuffer 16777216
        Checksum off
    }
    UDP Default{                        # the Default link comes first
        IPv4_address 10.0.0.1
        IPv4_Destination_Address 10.0.0.2
        Port 3780
        Interface sync0
    }
    UDP {
        IPv4_address 10.0.1.1
        IPv4_Destination_Address 10.0.1.2
    }
    Options {
        TCPWindowTracking Off
        ExpectationSync {
            ftp
            sip
        }
    }
}
General {
    Systemd on
    Nice -20
    HashSize 8192
    HashLimit 65535
    LogFile /var/log/conntrackd#1.log
    Syslog local0
    LockFile /var/lock/conntrack.lock
    UNIX { Path /run/conntrackd/ctl.sock }
    NetlinkBufferSize 134217728
    NetlinkBufferSizeMaxGrowth 8388608
    NetlinkOverrunResync 30
    NetlinkEventsReliable on
    PollSecs 15
    Scheduler {
        Type FIFO
        Priority 99
    }
    Filter From Kernelspace {
        Protocol Ignore { UDP ICMP esp }
        Address Ignore {
            IPv4_address 192.168.0.1/24
            IPv6_address ::1
        }
        Address Accept {
            IPv4_address 10.10.0.0/16
        }
        State Accept { ESTABLISHED CLOSED LISTEN for TCP }
    }
}
"""


def test_a_file_with_every_kind_of_statement(tmp_path: Path) -> None:
    imported = import_text(EVERYTHING, "ct.conf", Options(node_id=7))
    data = tomllib.loads(imported.toml)
    sync, cfg = data["sync"], imported.config
    assert sync["listen"] == "10.0.0.1:3780" and sync["interface"] == "sync0"
    assert peer_addresses(cfg.sync.link) == ["10.0.0.2:3780"]
    assert sync["second_link"]["listen"] == "[fe80::1%sync1]:3790" and sync["second_link"]["interface"] == "sync1"
    assert cfg.sync.second_link is not None and peer_addresses(cfg.sync.second_link) == ["[fe80::2%sync1]:3790"]
    assert sync["socket_buffer"] == 16777216  # one size for both links: the largest given
    assert data["kernel"] == {"shorten_timeout": 30, "inject_on_arrival": True,
                              "netlink_buffer": 134217728, "netlink_buffer_max": 134217728}
    assert data["filter"]["protocols"] == ["dccp", "gre", "icmpv6", "sctp", "tcp", "udplite"]
    assert data["filter"]["ignore"] == ["192.168.0.0/24", "::1/128", "127.0.0.0/8"]
    assert data["filter"]["tcp_states"] == ["ESTABLISHED", "CLOSE", "SYN_SENT2"]
    assert data["control"]["socket"] == "/run/conntrackd/snep.sock"
    assert cfg.node_id == 7 and cfg.sync.params.inject_on_arrival

    dropped = notes(imported, NOT_CARRIED)
    assert "ResendQueueSize" in dropped[4][0] and "CommitTimeout" in dropped[5][0] and "ACKWindowSize" in dropped[7][0]
    assert "third one is dropped" in dropped[26][0]
    assert "ExpectationSync" in dropped[32][0]
    assert "Nice" in dropped[40][0] and "HashLimit" in dropped[42][0]
    assert "LogFile /var/log/conntrackd#1.log" in dropped[43][0]  # '#' inside a path is no comment
    assert "NetlinkEventsReliable" in dropped[50][0] and "PollSecs" in dropped[51][0]
    assert "Scheduler" in dropped[52][0] and 53 not in dropped  # nothing inside it is answered again
    assert "Address Accept 10.10.0.0/16" in dropped[63][0]
    assert 57 not in dropped  # esp, ignored, is left out of snep's accepted protocols too
    said = notes(imported, NOTE)
    assert "always asks for a resync" in said[9][0]
    assert any("Kernelspace" in text for text in said[56])
    assert any("every one it knows but these" in text for text in said[57])
    assert "written as the prefix 192.168.0.0/24" in said[59][0]
    assert "SYN_SENT2" in said[65][0]
    assert not notes(imported, PLACEHOLDER)


def test_an_accepted_protocol_snep_does_not_know_is_not_carried() -> None:
    text = "Sync {\n Mode FTFW {\n }\n UDP {\n  IPv4_address 10.0.0.1\n  IPv4_Destination_Address 10.0.0.2\n }\n}\n" \
           "General {\n Filter {\n  Protocol Accept {\n   TCP\n   esp\n  }\n }\n}\n"
    imported = import_text(text, "x.conf")
    assert imported.config.filter.protocols == frozenset({6})
    assert "protocol esp: snep's filter knows" in notes(imported, NOT_CARRIED)[13][0]


def test_options_fill_in_what_conntrackd_does_not_say(tmp_path: Path) -> None:
    multicast = "Sync {\n Mode FTFW {\n }\n Multicast {\n  IPv4_address 225.0.0.50\n  Group 3780\n" \
                "  IPv4_interface 192.168.100.1\n  Interface eth2\n }\n}\n"
    imported = import_text(multicast, "m.conf", Options(node_id=2, peers=("192.168.100.2", "192.168.100.3"),
                                                          port=3781, key_file="/etc/snep/key"))
    sync = tomllib.loads(imported.toml)["sync"]
    assert peer_addresses(imported.config.sync.link) == ["192.168.100.2:3781", "192.168.100.3:3781"]
    assert sync["listen"] == "192.168.100.1:3781"
    assert sync["key_file"] == "/etc/snep/key"
    assert not notes(imported, PLACEHOLDER)
    with pytest.raises(ConfigError, match="--peer 'nonsense'"):
        import_text(multicast, "m.conf", Options(peers=("nonsense",)))


def test_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "conntrackd.conf"
    source.write_text(EVERYTHING)
    out = tmp_path / "snep.toml"
    first = snep("config", "import-conntrackd", str(source), "-o", str(out), "--node-id", "2")
    assert first.returncode == 0 and f"{out}: written" in first.stdout
    assert f"{source}:4: not carried: ResendQueueSize 131072: " in first.stderr
    again = snep("config", "import-conntrackd", str(source), "-o", str(out))
    assert again.returncode == 1 and "exists (--force overwrites it)" in again.stderr
    assert snep("config", "import-conntrackd", str(source), "-o", str(out), "--force").returncode == 0
    assert snep("config", "import-conntrackd", str(source), "--node-id", "0").returncode == 2
    to_stdout = snep("config", "import-conntrackd", str(source))
    assert tomllib.loads(to_stdout.stdout)["node"]["id"] == 1
    assert "node.id = 1: conntrackd has no node ids" in to_stdout.stderr
    run_check(out)


# ---------------------------------------------------------------- syntax errors

BAD = [
    ("sync {\n}\n", "x.conf:1: unknown keyword 'sync' at the top level (keywords are case-sensitive: 'Sync')"),
    ("Sync {\n  Mode FTFW {\n", "x.conf:2: the block opened here (Sync.Mode) is not closed"),
    ("Sync {\n}\n}\n", "x.conf:3: '}' closes no block"),
    ("General {\n  HashSize\n}\n", "x.conf:3: HashSize: missing value"),
    ("General {\n  HashSize abc\n}\nSync {\n Mode FTFW {\n }\n UDP {\n }\n}\n", "x.conf:2: HashSize: 'abc' is not a number"),
    ("Sync {\n  Mode SPAM {\n  }\n}\n", "x.conf:2: Mode 'SPAM': unknown sync mode"),
    ("Sync {\n  Mode FTFW {\n    RefreshTime 5\n  }\n}\n", "x.conf:3: unknown keyword 'RefreshTime' in Sync.Mode"),
    ("General {\n  Filter {\n    State Accept { ESTABLISHED }\n  }\n}\n", "x.conf:3: State Accept: expected 'STATE ... for TCP'"),
    ("General {\n  Filter {\n    State Accept { established for TCP }\n  }\n}\n",
     "x.conf:3: State Accept: unknown TCP state 'established'"),
    ("General {\n  LogFile on\n}\n", "x.conf: no Sync section"),
    ("Sync {\n  Mode FTFW {\n  }\n}\n", "x.conf: the Sync section has no UDP, TCP or Multicast section"),
    ("Sync {\n Mode FTFW {\n }\n UDP {\n  IPv4_address 10.0.0.300\n }\n}\n", "x.conf:5: IPv4_address: '10.0.0.300' is not"),
    ("Sync {\n Mode FTFW {\n  DisableExternalCache maybe\n }\n}\n", "x.conf:3: DisableExternalCache: 'maybe' is not on or off"),
    ("{\n}\n", "x.conf:1: '{' without a keyword at the top level"),
    ("General {\n  UNIX Path /x\n}\n", "x.conf:2: UNIX: expected '{', not 'Path'"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ", 1)[1][:40] for _, m in BAD])
def test_malformed_files_are_errors_with_their_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        import_text(text, "x.conf")
    assert str(error.value).startswith(message), str(error.value)


def test_a_malformed_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    source = tmp_path / "x.conf"
    source.write_text("Sync {\n  UDP { Port }\n}\n")
    result = snep("config", "import-conntrackd", str(source))
    assert result.returncode == 1 and result.stderr == f"snep config: error: {source}:2: Port: missing value\n"
    missing = snep("config", "import-conntrackd", str(tmp_path / "absent.conf"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


# ---------------------------------------------------------------- nothing goes unanswered


def test_every_statement_of_the_grammar_is_answered_for() -> None:
    """Each path conntrackd's grammar produces is carried (HANDLERS) or said not to be
    (NOT_CARRIED_WHY, NOTED_WHY, or inside a section that is)."""
    quiet = set(NOT_CARRIED_WHY) | set(NOTED_WHY)
    answered = set(HANDLERS) | quiet
    paths = syntax.paths()
    missing = sorted(p for p in paths if p not in answered and not any(p.startswith(q + ".") for q in quiet))
    assert not missing, f"no answer for {missing}"
    assert not answered - paths, f"answers for what the grammar does not have: {sorted(answered - paths)}"


def test_migration_doc_lists_every_keyword() -> None:
    """docs/migration.md's table has a row for each keyword the importer reads."""
    doc = (ROOT / "docs" / "migration.md").read_text()
    rows = set(re.findall(r"^\| `([A-Za-z0-9_]+)", doc, re.MULTILINE))
    keywords = {keyword for rules in syntax.GRAMMAR.values() for keyword in rules}
    assert not keywords - rows, f"docs/migration.md lacks {sorted(keywords - rows)}"


def test_the_imported_config_is_validated_by_snep_itself() -> None:
    """The importer hands out nothing config.parse refuses: a value out of snep's range is
    clamped and said so."""
    text = "Sync {\n Mode FTFW {\n  PurgeTimeout 0\n }\n UDP {\n  IPv4_address 10.0.0.1\n" \
           "  IPv4_Destination_Address 10.0.0.2\n  SndSocketBuffer 1024\n }\n}\n"
    imported = import_text(text, "x.conf")
    assert imported.config.sync.socket_buffer == config.SETTINGS[[s.name for s in config.SETTINGS]
                                                                 .index("sync.socket_buffer")].low
    said = notes(imported, NOTE)
    assert "out of snep's range for kernel.shorten_timeout" in said[3][0]
    assert any("out of snep's range for sync.socket_buffer" in text for text in said[8])
