"""ctnetlink codec: the one place where kernel messages and :class:`Entry` values meet.

Sans-I/O: bytes in, values out, and values in, bytes out. The netlink adapter owns
the sockets; this package owns every byte layout (``nlmsghdr``, ``nfgenmsg`` and the
``CTA_*`` attributes of linux/netfilter/nfnetlink_conntrack.h). One concept a module:

- :mod:`.constants`: netlink and ctnetlink numbers, header structs;
- :mod:`.layout`: the tuple layout and labels bitmap both directions share;
- :mod:`.decode`: messages, errors, stats, and the generic (reference) entry decoder;
- :mod:`.encode`: every request, and the generic (reference) create encoder;
- :mod:`.fast`: the generated fast paths, a decoder that learns layouts and a
  compiled create encoder, which must agree with the reference ones byte for byte.

:func:`decode_entry` and :func:`encode_create` take the fast paths. One switch turns
them off, for a suspected codec bug or a comparison: ``SNEP_NO_FASTPATH=1`` in the
environment (read once, at import), or ``use_fast_paths(False)`` at run time; then
nothing is learned or compiled and both are the generic code.
"""

from snep.kernel.ctnetlink.constants import *  # noqa: F403 - every constant is part of the codec's API
from snep.kernel.ctnetlink.decode import (
    GROUP_OF_KIND,
    Message,
    decode_entry_generic,
    decode_error,
    decode_stats,
    decode_tuple,
    decode_tuple_generic,
    event_kind,
    iter_attrs,
    iter_messages,
)
from snep.kernel.ctnetlink.encode import (
    encode_create_generic,
    encode_delete,
    encode_dump,
    encode_flush,
    encode_noop,
    encode_protoinfo,
    encode_stats,
    encode_timeout,
    encode_tuple,
    encode_update,
    message,
    nest,
    nla,
)
from snep.kernel.ctnetlink.fast import (
    FastPaths,
    decode_entry,
    encode_create,
    encode_create_record,
    fast_paths,
    use_fast_paths,
)
from snep.kernel.ctnetlink.layout import labels_from_bytes, labels_to_bytes

__all__ = [  # besides the constants
    "GROUP_OF_KIND",
    "FastPaths",
    "Message",
    "decode_entry",
    "decode_entry_generic",
    "decode_error",
    "decode_stats",
    "decode_tuple",
    "decode_tuple_generic",
    "encode_create",
    "encode_create_record",
    "encode_create_generic",
    "encode_delete",
    "encode_dump",
    "encode_flush",
    "encode_noop",
    "encode_protoinfo",
    "encode_stats",
    "encode_timeout",
    "encode_tuple",
    "encode_update",
    "event_kind",
    "iter_attrs",
    "fast_paths",
    "iter_messages",
    "labels_from_bytes",
    "labels_to_bytes",
    "message",
    "nest",
    "nla",
    "use_fast_paths",
]
