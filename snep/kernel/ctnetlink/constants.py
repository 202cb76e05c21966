"""Netlink, nfnetlink and ctnetlink numbers and header structs (linux/netlink.h,
linux/netfilter/nfnetlink.h, linux/netfilter/nfnetlink_conntrack.h).

Header words of netlink attributes are host-endian and payloads big-endian.
"""

from __future__ import annotations

import struct as _struct  # underscored: the package re-exports this module with *

# --- netlink ------------------------------------------------------------------------

NETLINK_NETFILTER = 12
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_BROADCAST_ERROR = 4
NETLINK_NO_ENOBUFS = 5
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# --- nfnetlink / ctnetlink ------------------------------------------------------------

NFNETLINK_V0 = 0
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
IPCTNL_MSG_CT_GET_STATS_CPU = 4
IPCTNL_MSG_CT_GET_STATS = 5

MSG_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
MSG_CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
MSG_CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
MSG_CT_GET_STATS_CPU = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU
MSG_CT_GET_STATS = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS

# multicast groups (enum nfnetlink_groups)
NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_HELP = 5
CTA_NAT_SRC = 6
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_USE = 11
CTA_ID = 12
CTA_NAT_DST = 13
CTA_TUPLE_MASTER = 14
CTA_SEQ_ADJ_ORIG = 15
CTA_SEQ_ADJ_REPLY = 16
CTA_SECMARK = 17
CTA_ZONE = 18
CTA_SECCTX = 19
CTA_TIMESTAMP = 20
CTA_MARK_MASK = 21
CTA_LABELS = 22
CTA_LABELS_MASK = 23
CTA_SYNPROXY = 24
CTA_FILTER = 25
CTA_STATUS_MASK = 26

CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTO_ICMP_TYPE = 5
CTA_PROTO_ICMP_CODE = 6
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTO_ICMPV6_TYPE = 8
CTA_PROTO_ICMPV6_CODE = 9

CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_DCCP = 2
CTA_PROTOINFO_SCTP = 3
CTA_PROTOINFO_TCP_STATE = 1
CTA_PROTOINFO_TCP_WSCALE_ORIGINAL = 2
CTA_PROTOINFO_TCP_WSCALE_REPLY = 3
CTA_PROTOINFO_TCP_FLAGS_ORIGINAL = 4
CTA_PROTOINFO_TCP_FLAGS_REPLY = 5
CTA_PROTOINFO_DCCP_STATE = 1
CTA_PROTOINFO_DCCP_ROLE = 2
CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ = 3
CTA_PROTOINFO_SCTP_STATE = 1
CTA_PROTOINFO_SCTP_VTAG_ORIGINAL = 2
CTA_PROTOINFO_SCTP_VTAG_REPLY = 3

CTA_SEQADJ_CORRECTION_POS = 1
CTA_SEQADJ_OFFSET_BEFORE = 2
CTA_SEQADJ_OFFSET_AFTER = 3

CTA_HELP_NAME = 1

CTA_NAT_V4_MINIP = 1
CTA_NAT_V4_MAXIP = 2
CTA_NAT_PROTO = 3
CTA_NAT_V6_MINIP = 4
CTA_NAT_V6_MAXIP = 5
CTA_PROTONAT_PORT_MIN = 1
CTA_PROTONAT_PORT_MAX = 2

# CTA_STATS_* of IPCTNL_MSG_CT_GET_STATS_CPU (per CPU) and _GET_STATS (global)
STATS_CPU_NAMES = {
    1: "searched",
    2: "found",
    3: "new",
    4: "invalid",
    5: "ignore",
    6: "delete",
    7: "delete_list",
    8: "insert",
    9: "insert_failed",
    10: "drop",
    11: "early_drop",
    12: "error",
    13: "search_restart",
    14: "clash_resolve",
    15: "chain_toolong",
}
STATS_GLOBAL_NAMES = {1: "entries", 2: "max_entries"}

NLMSGHDR = _struct.Struct("=IHHII")
NLMSGERR = _struct.Struct("=iIHHII")  # error, then the offending nlmsghdr
NFGENMSG = _struct.Struct("=BBH")  # family, version, res_id (big-endian in the kernel: 0, or a queue number)
NLA = _struct.Struct("=HH")
U8 = _struct.Struct(">B")
U16 = _struct.Struct(">H")
U32 = _struct.Struct(">I")
U64 = _struct.Struct(">Q")

HEADER_SIZE = NLMSGHDR.size + NFGENMSG.size  # 20


def align(n: int) -> int:
    """NLMSG_ALIGN / NLA_ALIGN: netlink pads messages and attributes to 4 bytes."""
    return (n + 3) & ~3
