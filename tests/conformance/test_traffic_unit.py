"""The traffic checker's bookkeeping: stalls, losses and duplicates are counted right."""

from snep.lab.traffic import RECORD, Flow


def test_in_order_echoes_record_no_stall():
    flow = Flow(id=1, kind="tcp")
    for seq in range(5):
        flow.on_echo(seq, 100.0 + seq * 0.1, stall=0.3)
    assert (flow.received, flow.lost, flow.dups, flow.stalls) == (5, 0, 0, [])


def test_a_silence_longer_than_the_threshold_is_a_stall_interval():
    flow = Flow(id=1, kind="tcp")
    flow.on_echo(0, 100.0, stall=0.3)
    flow.on_echo(1, 100.1, stall=0.3)
    flow.on_echo(2, 103.6, stall=0.3)
    assert flow.stalls == [(100.1, 103.6)]
    assert flow.last_rx == 103.6


def test_skipped_sequence_numbers_are_lost_and_old_ones_duplicates():
    flow = Flow(id=1, kind="udp")
    flow.on_echo(0, 1.0, stall=0.3)
    flow.on_echo(3, 1.1, stall=0.3)  # 1 and 2 never came back
    flow.on_echo(2, 1.2, stall=0.3)  # late (reordered or duplicated): not counted again
    assert (flow.received, flow.lost, flow.dups, flow.expected) == (2, 2, 1, 4)


def test_record_is_sixteen_bytes():
    assert RECORD.size == 16
    assert RECORD.unpack(RECORD.pack(7, 9, 1.5)) == (7, 9, 1.5)
