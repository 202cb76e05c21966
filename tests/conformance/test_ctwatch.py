"""The conformance suite's conntrack event recorder (snep.lab.ctwatch): its lines read
back as measure.parse_ct_events expects, and on a real kernel it keeps every event of
the watched port through a burst that makes ``conntrack -E`` lose some."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snep.entry import Proto, make_entry
from snep.lab import ctwatch, netns
from snep.lab.conformance import measure
from tests.processes import stop


def test_a_recorded_line_reads_back_as_the_event() -> None:
    entry = make_entry("10.1.0.10", "10.2.0.10", Proto.TCP, 40000, 5001, timeout=60)
    text = "\n".join([ctwatch.SUBSCRIBED, ctwatch.line(1700000000.25, "NEW", entry),
                      ctwatch.line(1700000001.5, "DESTROY", entry)])
    events = measure.parse_ct_events(text)
    key = ("10.1.0.10", "10.2.0.10", 40000, 5001)
    assert events == [measure.CtEvent(1700000000.25, "NEW", key), measure.CtEvent(1700000001.5, "DESTROY", key)]
    assert not measure.events_lost(text)
    assert measure.events_lost(text + "\nENOBUFS: events lost\n")


@pytest.mark.root
def test_every_event_of_the_port_is_recorded_through_a_burst(tmp_path: Path) -> None:
    reason = netns.available()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    ns = f"snepw-{os.getpid()}"
    burst = 5000  # a takeover's commit: conntrack -E 1.4.7 reported ENOBUFS and kept ~half
    lines = [f"-I -s 10.1.{i // 250}.{1 + i % 250} -d 10.2.0.10 -p tcp --sport {1024 + i} "
             f"--dport {5001 if i % 10 == 0 else 80} --state ESTABLISHED -t 3600 -u SEEN_REPLY,ASSURED"
             for i in range(burst)]
    (tmp_path / "entries").write_text("\n".join(lines) + "\n")
    log = tmp_path / "events.txt"
    with netns.namespace(ns):
        with open(log, "wb") as out:
            proc = netns.popen_in(ns, [sys.executable, "-m", "snep.lab.ctwatch", "--dport", "5001"],
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 20
            while ctwatch.SUBSCRIBED not in log.read_text() and time.time() < deadline:
                time.sleep(0.05)
            netns.run_in(ns, ["conntrack", "-R", str(tmp_path / "entries")])
            netns.run_in(ns, ["conntrack", "-F"], check=False)
            deadline = time.time() + 20
            while len(measure.parse_ct_events(log.read_text())) < 2 * burst // 10 and time.time() < deadline:
                time.sleep(0.1)
        finally:
            stop(proc)
    text = log.read_text()
    events = measure.parse_ct_events(text)
    assert not measure.events_lost(text), text[-500:]
    assert sum(e.kind == "NEW" for e in events) == burst // 10  # the watched port's, and only those
    assert sum(e.kind == "DESTROY" for e in events) == burst // 10
    assert {e.key[3] for e in events} == {5001}
