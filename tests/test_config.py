"""Config validation: every bad config is refused with file, key and reason."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from snep import config
from snep.entry import Proto, TcpState, make_entry
from snep.errors import ConfigError
from snep.level import Level

BASE = """
[node]
id = 1
[sync]
listen = "10.0.0.1:3780"
peers = [{ id = 2, address = "10.0.0.2:3780" }]
"""
INSECURE = BASE + "insecure = true\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "snep.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def test_minimal_config_has_safe_defaults(tmp_path):
    cfg = config.load(write(tmp_path, INSECURE))
    assert cfg.node_id == 1
    assert cfg.sync.link.listen == config.Endpoint("10.0.0.1", 3780)
    assert cfg.sync.link.peers == (config.Peer(2, config.Endpoint("10.0.0.2", 3780)),)
    assert cfg.sync.params.level is Level.STRONG
    assert cfg.sync.key_file is None and cfg.sync.insecure
    assert cfg.sync.params.max_entries == 4_194_304
    assert cfg.metrics.listen is None  # off by default
    assert cfg.sync.params.inject_on_arrival is True  # warm: a takeover writes nothing
    assert cfg.sync.socket_buffer >= 8 * 1024 * 1024
    assert not cfg.filter.accepts(make_entry("127.0.0.1", "127.0.0.1", Proto.TCP, 1, 2))
    assert cfg.filter.accepts(make_entry("10.0.0.1", "10.0.0.2", Proto.SCTP, 1, 2))


def test_example_config_is_valid():
    example = Path(__file__).resolve().parent.parent / "contrib" / "snep.toml"
    cfg = config.load(example, check_files=False)
    assert cfg.sync.key_file == Path("/etc/snep/key")


def test_full_config(tmp_path):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    cfg = config.load(
        write(
            tmp_path,
            f"""
            [node]
            id = 7
            state_file = "{tmp_path}/state"
            [sync]
            listen = "[fd00::1]:4000"
            peers = [{{ id = 2, address = "fd00::2" }}, {{ id = 3, address = "[fd00::3]:4001" }}]
            multicast_group = "ff02::123"
            interface = "sync0"
            key_file = "{key}"
            level = "incremental"
            incremental_period = 0.5
            [sync.second_link]
            listen = "[fd01::1]:4000"
            peers = [{{ id = 3, address = "[fd01::3]" }}]
            [kernel]
            inject_on_arrival = true
            [filter]
            protocols = ["tcp", "UDP"]
            ignore = ["192.168.0.0/16", "fd00::/64"]
            tcp_states = ["established", "SYN_SENT"]
            [control]
            socket = "{tmp_path}/ctl.sock"
            [metrics]
            listen = "127.0.0.1:9477"
            """,
        )
    )
    assert cfg.sync.link.multicast and cfg.sync.link.destinations() == (config.Endpoint("ff02::123", 4000),)
    assert [p.node_id for p in cfg.sync.link.peers] == [2, 3]
    assert cfg.sync.link.peers[1].address == config.Endpoint("fd00::3", 4001)
    assert cfg.sync.second_link.peers == (config.Peer(3, config.Endpoint("fd01::3", 4000)),)  # node 2: main link only
    assert cfg.sync.params.level is Level.INCREMENTAL and cfg.sync.params.incremental_period == 0.5
    assert cfg.filter.protocols == {Proto.TCP, Proto.UDP}
    assert cfg.filter.accepts(make_entry("10.0.0.1", "10.9.0.1", Proto.TCP, 1, 2))
    assert not cfg.filter.accepts(make_entry("192.168.1.1", "10.9.0.1", Proto.TCP, 1, 2))
    assert not cfg.filter.accepts(make_entry("10.0.0.1", "10.9.0.1", Proto.ICMP))
    assert cfg.filter.tcp_states == {TcpState.ESTABLISHED, TcpState.SYN_SENT}
    assert cfg.metrics.listen == config.Endpoint("127.0.0.1", 9477)
    assert cfg.sync.params.inject_on_arrival


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nlvel = "weak"\n', "sync.lvel: unknown key (did you mean 'level'?)"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[bogus]\n', "bogus: unknown key"),
        ('[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "node: missing section"),
        ('[node]\nid = 0\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "node.id: 0 is out of range"),
        ('[node]\nid = "one"\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "node.id: must be an integer, not a string"),
        ('[node]\nid = 1\n', "sync: missing section"),
        ('[node]\nid = 1\n[sync]\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "sync.listen: missing (required)"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.300:3780"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "sync.listen: bad address '10.0.0.300:3780'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1:99999"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "port 99999 is out of range"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "fw2" }]\n', "sync.peers[0].address: bad address 'fw2'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "[fd00::2]:1" }]\n', "sync.peers[0].address: '[fd00::2]:1' is not of the same address family"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\n', "sync.peers: missing"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nmulticast_group = "10.0.0.9"\ninterface = "s0"\n', "sync.multicast_group: '10.0.0.9' is not a multicast address"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nmulticast_group = "225.0.0.50"\n', "sync.interface: missing"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\nmulticast_group = "225.0.0.50"\ninterface = "s0"\n', "sync.peers: missing"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nlevel = "paranoid"\n', "sync.level: unknown level 'paranoid'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nmtu = 100\n', "sync.mtu: 100 is out of range"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\nalive_interval = 5\npeer_dead_timeout = 2\n', "sync.peer_dead_timeout: 2 must be longer than alive_interval"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[sync.second_link]\nlisten = "10.0.1.1"\n', "sync.second_link.peers: missing"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[kernel]\ninject_on_arrival = "yes"\n', "kernel.inject_on_arrival: must be a boolean, not a string"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[filter]\nprotocols = ["tcp", "quic"]\n', "filter.protocols[1]: unknown protocol 'quic'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[filter]\nignore = ["10.0.0.1/8"]\n', "filter.ignore[0]: bad address or prefix '10.0.0.1/8'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[filter]\ntcp_states = ["OPEN"]\n', "filter.tcp_states[0]: unknown TCP state 'OPEN'"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[control]\nsocket = "snep.sock"\n', "control.socket: 'snep.sock' must be an absolute path"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[metrics]\nlisten = "localhost:80"\n', "metrics.listen: bad address 'localhost:80'"),
        ('[node]\nid = 1\nlog_level = "chatty"\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "node.log_level: unknown level 'chatty'"),
        ('[node\nid = 1\n', "TOML syntax error"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = ["10.0.0.2"]\n', "sync.peers[0]: must be a table { id = N, address = \"ADDRESS:PORT\" }"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ address = "10.0.0.2" }]\n', "sync.peers[0].id: must be the peer's node id"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2 }]\n', "sync.peers[0].address: missing"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2", port = 1 }]\n', "sync.peers[0].port: unknown key"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 1, address = "10.0.0.2" }]\n', "sync.peers[0].id: 1 is this node's own id"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1:3780"\npeers = [{ id = 2, address = "10.0.0.1:3780" }]\n', "sync.peers[0].address: '10.0.0.1:3780' is this node's own listen address"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }, { id = 2, address = "10.0.0.3" }]\n', "sync.peers: lists the same node id twice"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }, { id = 3, address = "10.0.0.2" }]\n', "sync.peers: lists the same address twice"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n[sync.second_link]\nlisten = "10.0.1.1"\npeers = [{ id = 3, address = "10.0.1.3" }]\n', "sync.second_link.peers[0].id: node 3 is not a peer of sync.peers"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\n', "sync.key_file: missing: frames must be sealed"),
        ('[node]\nid = 1\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = "yes"\n', "sync.insecure: must be a boolean"),
        ('[node]\nid = 1\nstate_file = ""\n[sync]\nlisten = "10.0.0.1"\npeers = [{ id = 2, address = "10.0.0.2" }]\ninsecure = true\n', "node.state_file: is empty"),
    ],
)
def test_bad_config_gives_precise_error(tmp_path, snippet, expected):
    assert expected in error_of(tmp_path, snippet)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file does not exist"):
        config.load(tmp_path / "nope.toml")


def test_a_key_file_and_insecure_together_are_refused(tmp_path):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    assert "sync.insecure: is true, but key_file is set" in error_of(tmp_path, INSECURE + f'key_file = "{key}"\n')


def test_missing_key_file(tmp_path):
    message = error_of(tmp_path, BASE + f'key_file = "{tmp_path}/absent"\n')
    assert f"sync.key_file: key file {tmp_path}/absent does not exist" in message


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o660, 0o604, 0o610])
def test_a_key_file_others_or_the_group_may_access_is_refused(tmp_path, mode):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(mode)
    message = error_of(tmp_path, BASE + f'key_file = "{key}"\n')
    assert f"sync.key_file: key file {key} has mode {mode:04o}" in message and "chmod 600" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_files_of_mode_0600_and_0400_are_accepted(tmp_path, mode):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(mode)
    assert config.load(write(tmp_path, BASE + f'key_file = "{key}"\n')).sync.key_file == key


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_of_another_user_is_refused(tmp_path):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    os.chown(key, 4242, 4242)
    message = error_of(tmp_path, BASE + f'key_file = "{key}"\n')
    assert f"sync.key_file: key file {key} is owned by uid 4242, neither root nor this user" in message


def test_a_key_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    from snep.runtime.keys import load_keyring

    key = tmp_path / "key"
    key.write_bytes(b"1 \xff\xfe00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=f"sync.key_file: key file {key}: not UTF-8 text"):
        load_keyring(key)


def test_key_file_errors_name_the_file_the_key_and_the_line(tmp_path):
    from snep.runtime.keys import load_keyring

    key = tmp_path / "key"
    key.write_text("# keys\n1 00112233445566778899aabbccddeeff\n2 zz\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match=f"sync.key_file: key file {key}, line 3: the secret is not hexadecimal"):
        load_keyring(key)
    key.write_text("1 0011\n")
    with pytest.raises(ConfigError, match=f"sync.key_file: key file {key}, line 1: key 1: the secret must be at least 16 bytes"):
        load_keyring(key)


def test_key_file_that_is_a_directory(tmp_path):
    assert "is not a regular file" in error_of(tmp_path, BASE + f'key_file = "{tmp_path}"\n')


def test_unreadable_key_file(tmp_path, monkeypatch):
    key = tmp_path / "key"
    key.write_text("1 00112233445566778899aabbccddeeff\n")
    key.chmod(0o600)
    if os.geteuid() == 0:
        # root reads any file (and this interpreter is not usable by another user):
        # make the access check answer as it does for a user without permission
        real_access = os.access
        monkeypatch.setattr(config.os, "access", lambda path, mode: False if Path(path) == key else real_access(path, mode))
    else:
        key.chmod(0o000)
    message = error_of(tmp_path, BASE + f'key_file = "{key}"\n')
    assert f"sync.key_file: key file {key} is not readable by this user" in message


def test_configs_are_frozen(tmp_path):
    cfg = config.load(write(tmp_path, INSECURE))
    with pytest.raises(AttributeError):
        cfg.node_id = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "text, endpoint",
    [
        ("10.0.0.1:80", config.Endpoint("10.0.0.1", 80)),
        ("10.0.0.1", config.Endpoint("10.0.0.1", config.DEFAULT_PORT)),
        ("[fd00::1]:80", config.Endpoint("fd00::1", 80)),
        ("fd00::1", config.Endpoint("fd00::1", config.DEFAULT_PORT)),
        ("[fe80::1%sync0]:80", config.Endpoint("fe80::1", 80, "sync0")),
    ],
)
def test_endpoints(text, endpoint):
    assert config.parse_endpoint(text) == endpoint
