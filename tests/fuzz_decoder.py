"""Coverage-guided fuzz target (atheris / libFuzzer) for the frame decoder.

Run it standalone, for as long as you like::

    .venv/bin/python tests/fuzz_decoder.py [libFuzzer options] [CORPUS_DIR ...]
    .venv/bin/python tests/fuzz_decoder.py -runs=200000 /tmp/snep-corpus
    .venv/bin/python tests/fuzz_decoder.py -max_total_time=600

With ``--seed-corpus DIR`` it first writes valid frames of every message type
(plain and sealed) into DIR, so that the fuzzer starts past the magic check.

The property: for any input, ``decode_frame`` either raises ``DecodeError`` or
returns a frame that re-encodes to bytes decoding to the same frame. Anything else
(another exception, a frame that does not survive a round trip) is a crash that
libFuzzer reports with the input that caused it. The first input byte chooses
whether the decoder gets a keyring (odd: sealed frames are opened).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from snep.errors import DecodeError
    from snep.wire import codec
    from snep.wire.auth import Key, Keyring

KEY = Key(7, b"fuzzing-secret-0123456789abcdef!")
KEYRING = Keyring([KEY])


def test_one_input(data: bytes) -> None:
    if not data:
        return
    keyring = KEYRING if data[0] & 1 else None
    frame_bytes = data[1:]
    try:
        frame = codec.decode_frame(frame_bytes, keyring)
    except DecodeError as error:
        if codec.DECODER_BUG in str(error):
            raise AssertionError(f"a check is missing in the decoder: {error}") from error
        return
    again = codec.decode_frame(codec.encode_frame(frame, KEY if keyring else None), keyring)
    if again != frame:
        raise AssertionError(f"round trip changed the frame: {frame!r} -> {again!r}")


def seed_frames() -> list[bytes]:
    """Valid frames (prefixed with the keyring byte) to start the corpus from."""
    from snep.entry import (
        DccpInfo,
        Event,
        EventKind,
        Proto,
        SctpInfo,
        SeqAdj,
        make_entry,
        make_tuple,
    )
    from snep.wire.messages import (
        Ack,
        Alive,
        Frame,
        Hello,
        MessageType,
        Nack,
        Report,
        ReportAck,
        ResyncRequest,
    )

    tcp = make_entry("10.0.0.1", "10.0.0.2", Proto.TCP, 40000, 80)
    nat = tcp._replace(
        reply=make_tuple("10.0.0.2", "192.0.2.1", Proto.TCP, 80, 61000),
        seqadj_orig=SeqAdj(1, 2, 3),
        seqadj_reply=SeqAdj(4, 5, 6),
        labels=(1 << 127) | 1,
        helper="ftp",
        zone=3,
        mark=9,
    )
    entries = [
        tcp,
        nat,
        make_entry("fd00::1", "fd00::2", Proto.TCP, 1, 2),
        make_entry("fd00::1", "fd00::2", Proto.SCTP, 1, 2, protoinfo=SctpInfo()),
        make_entry("10.0.0.1", "10.0.0.2", Proto.DCCP, 1, 2, protoinfo=DccpInfo()),
        make_entry("10.0.0.1", "10.0.0.2", Proto.ICMP, 7, 8 << 8),
        make_entry("fd00::1", "fd00::2", Proto.ICMPV6, 7, 128 << 8),
        make_entry("10.0.0.1", "10.0.0.2", Proto.GRE),
    ]
    frames = [
        Frame(MessageType.STATE, 1, 2, 3, tuple(Event(EventKind(1 + i % 3), e) for i, e in enumerate(entries))),
        Frame(MessageType.STATE, 1, 2, 3, (), codec.FLAG_BULK_END),
        Frame(MessageType.STATE, 1, 2, 3, (Event(EventKind.NEW, tcp),), codec.FLAG_ACK_NOW),
        Frame(MessageType.REPORT, 1, 0, 3, (Report(7, nat),), dst=2),
        Frame(MessageType.REPORT_ACK, 2, 2, 3, (ReportAck(7),), dst=1),
        Frame(MessageType.ACK, 1, 2, 3, (Ack(1, 5),)),
        Frame(MessageType.NACK, 1, 2, 3, (Nack(6, 9),)),
        Frame(MessageType.RESYNC_REQUEST, 1, 2, 3, (ResyncRequest(),)),
        Frame(MessageType.ALIVE, 1, 2, 3, (Alive(),)),
        Frame(MessageType.HELLO, 1, 2, 3, (Hello(2, 1, True, echo=0x1122334455667788),), dst=2, session=9, counter=4),
    ]
    seeds = [b"\x00" + codec.encode_frame(f) for f in frames]
    seeds += [b"\x01" + codec.encode_frame(f, KEY) for f in frames]
    return seeds


def write_seed_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(seed_frames()):
        (directory / f"seed-{number:02d}").write_bytes(seed)


def main(argv: list[str]) -> None:
    if "--seed-corpus" in argv:
        where = argv.index("--seed-corpus")
        write_seed_corpus(Path(argv[where + 1]))
        argv = argv[:where] + argv[where + 2 :]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
