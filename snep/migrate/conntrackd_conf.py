"""conntrackd.conf read the way conntrackd reads it: a tree of statements with line numbers.

The syntax is conntrack-tools' (src/read_config_lex.l, src/read_config_yy.y):
whitespace and newlines only separate words; ``#`` at the start of a word comments out
the rest of the line (not inside a path: ``/var/run/a#b`` is one path); ``{`` and
``}`` open and close a block. A statement is a keyword, the arguments its grammar rule
takes and, for a section, a block. Keywords are case-sensitive, as in conntrackd
("You should consider this file as case-sensitive", conntrackd.conf(5)); the values
``on``/``off`` (``yes``/``no``) and the sync mode names are not.

Because newlines carry no meaning, the parser must know how many words each keyword
takes: :data:`GRAMMAR` says it for every keyword of every section, which is also the
list of what the importer has to answer for (tests/test_migrate_conntrackd.py holds
docs/migration.md's table to it). A word the grammar does not expect is an error with
its line number, never a guess.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from snep.errors import ConfigError


class ConntrackdSyntaxError(ConfigError):
    """conntrackd.conf text that conntrackd itself would refuse (FILE:LINE: reason)."""


@dataclass(frozen=True)
class Word:
    text: str
    line: int


@dataclass
class Statement:
    """``keyword args... [{ block }]``; a list block (``Protocol Accept { TCP UDP }``)
    holds words, a section's block holds statements."""

    keyword: str
    args: list[Word]
    line: int
    body: list[Statement] | None = None  # a section's statements
    items: list[Word] | None = None  # a list block's words
    section: str = ""  # where it stands: "Sync", "Sync.Mode", "General.Filter" ...

    @property
    def path(self) -> str:
        return f"{self.section}.{self.keyword}" if self.section else self.keyword

    def arg(self, index: int = 0) -> str:
        return self.args[index].text

    def find(self, keyword: str) -> Iterator[Statement]:
        return (s for s in self.body or () if s.keyword == keyword)

    def text(self) -> str:
        """The statement as written (without its block)."""
        return " ".join([self.keyword, *(w.text for w in self.args)])


@dataclass(frozen=True)
class Rule:
    """What follows a keyword: ``args`` words of the kinds ``value`` allows, then a section
    (``block``: the grammar of its statements) or a list block (``words``); ``max_args``
    words before ``{`` for the section keywords with optional ones (``UDP Default {``,
    ``Filter From Userspace {``)."""

    args: int = 0
    value: tuple[str, ...] = ("word",)  # kinds of KINDS an argument may be (one of)
    block: str | None = None  # name of the section grammar in GRAMMAR
    words: bool = False  # a block of plain words (protocol names, helpers, states)
    max_args: int = 0  # with a block: up to this many words before '{'
    optional_block: bool = False  # ExpectationSync on | ExpectationSync { ftp sip }
    until_for: bool = False  # Replicate STATE... for TCP (conntrackd < 0.9.8)


SWITCHES = {"on": True, "yes": True, "off": False, "no": False}  # any case, as conntrackd's lexer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


#: the kinds of value conntrackd's lexer tells apart: kind -> (test, what it is called)
KINDS: dict[str, tuple[Callable[[str], bool], str]] = {
    "number": (str.isdigit, "a number"),
    "signed": (lambda t: t.lstrip("+-").isdigit(), "a number"),
    "switch": (lambda t: t.lower() in SWITCHES, "on or off"),
    "address": (_is_address, "an IPv4 or IPv6 address"),
    "path": (lambda t: t.startswith("/"), "an absolute path"),
    "word": (lambda t: True, "a word"),
}

_W, _N, _S, _IP, _PATH = (Rule(args=1, value=(kind,)) for kind in ("word", "number", "switch", "address", "path"))
_0 = Rule()

_CHANNEL_COMMON = {
    "IPv4_address": _IP, "IPv6_address": _IP, "Interface": _W, "SndSocketBuffer": _N,
    "RcvSocketBuffer": _N, "McastSndSocketBuffer": _N, "McastRcvSocketBuffer": _N, "Checksum": _S,
}
_UNICAST = {**_CHANNEL_COMMON, "IPv4_Destination_Address": _IP, "IPv6_Destination_Address": _IP, "Port": _N}
_MODE_COMMON = {"CommitTimeout": _N, "PurgeTimeout": _N}
_LOG = {"LogFile": Rule(args=1, value=("switch", "path")), "Syslog": Rule(args=1, value=("switch", "word"))}

#: section grammar name -> keyword -> rule (conntrack-tools 1.4's read_config_yy.y)
GRAMMAR: dict[str, dict[str, Rule]] = {
    "": {
        "Sync": Rule(block="Sync"),
        "General": Rule(block="General"),
        "Stats": Rule(block="Stats"),
        "Helper": Rule(block="Helper"),
        "IgnoreProtocol": Rule(words=True),  # old syntax of Filter's Protocol Ignore
        "IgnoreTrafficFor": Rule(block="Addresses"),  # old syntax of Address Ignore
        "StripNAT": _0,
    },
    "Sync": {
        "Mode": Rule(args=1, block="Mode"),  # FTFW, ALARM, NOTRACK: the block's grammar is the mode's
        "Multicast": Rule(block="Multicast", max_args=1),  # [Default]
        "UDP": Rule(block="UDP", max_args=1),
        "TCP": Rule(block="TCP", max_args=1),
        "Options": Rule(block="Options"),
        "RefreshTime": _N, "CacheTimeout": _N, "CommitTimeout": _N, "PurgeTimeout": _N,
        "Checksum": _S, "RelaxTransitions": _0, "DelayDestroyMessages": _0, "ListenTo": _IP,
        "Replicate": Rule(until_for=True), "CacheWriteThrough": _S, "DestroyTimeout": _N,
    },
    "Mode FTFW": {
        **_MODE_COMMON, "ResendQueueSize": _N, "ResendBufferSize": _N, "ACKWindowSize": _N,
        "DisableExternalCache": _S, "StartupResync": _S,
    },
    "Mode ALARM": {
        **_MODE_COMMON, "RefreshTime": _N, "CacheTimeout": _N, "RelaxTransitions": _0,
        "DelayDestroyMessages": _0,
    },
    "Mode NOTRACK": {
        **_MODE_COMMON, "DisableInternalCache": _S, "DisableExternalCache": _S, "StartupResync": _S,
    },
    "Multicast": {**_CHANNEL_COMMON, "IPv4_interface": _IP, "IPv6_interface": _IP, "Group": _N, "Backlog": _N},
    "UDP": _UNICAST,
    "TCP": {**_UNICAST, "ErrorQueueLength": _N},
    "Options": {
        "TCPWindowTracking": _S,
        "ExpectationSync": Rule(args=1, value=("switch",), words=True, optional_block=True),
    },
    "General": {
        **_LOG, "Systemd": _S, "Nice": Rule(args=1, value=("signed",)), "HashSize": _N, "HashLimit": _N,
        "LockFile": _PATH, "UNIX": Rule(block="UNIX"), "NetlinkBufferSize": _N,
        "NetlinkBufferSizeMaxGrowth": _N, "SocketBufferSize": _N, "SocketBufferSizeMaxGrown": _N,
        "SocketBufferSizeMaxGrowth": _N, "NetlinkOverrunResync": Rule(args=1, value=("switch", "number")),
        "NetlinkEventsReliable": _S, "PollSecs": _N, "EventIterationLimit": _N,
        "Filter": Rule(block="Filter", max_args=2), "Scheduler": Rule(block="Scheduler"), "Family": _W,
    },
    "UNIX": {"Path": _PATH, "Backlog": _N},
    "Scheduler": {"Type": _W, "Priority": _N},
    "Filter": {
        "Protocol": Rule(args=1, words=True),  # Accept | Ignore
        "Address": Rule(args=1, block="Addresses"),
        "State": Rule(args=1, words=True),
    },
    "Addresses": {"IPv4_address": _IP, "IPv6_address": _IP},
    "Stats": {**_LOG, "LogFileBufferSize": _N, "NetlinkEventsReliable": _S},
    "Helper": {"Type": Rule(block="Helper Type", max_args=3)},
    "Helper Type": {"QueueNum": _N, "QueueLen": _N, "Policy": Rule(block="Helper Policy", max_args=1)},
    "Helper Policy": {"ExpectMax": _N, "ExpectTimeout": _N},
}

MODES = ("FTFW", "ALARM", "NOTRACK")
#: the old names conntrackd still takes (with a warning)
MODE_ALIASES = {"NACK": "FTFW", "PERSISTENT": "ALARM"}

# flex's longest match, in the order conntrackd's lexer tries: braces, a path (which may
# hold '#'), a comment, any other word
_TOKEN = re.compile(r"(?P<brace>[{}])|(?P<path>/[^\"\s]*)|(?P<comment>#[^\n]*)|(?P<word>[^\s{}#]+)|(?P<nl>\n)|[ \t\r\f\v]+")


def tokens(text: str) -> list[Word]:
    """The words and braces of ``text``, each with its line; comments dropped."""
    found: list[Word] = []
    line = 1
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "nl":
            line += 1
        elif kind in ("brace", "path", "word"):
            found.append(Word(match.group(), line))
    return found


class _Parser:
    def __init__(self, words: list[Word], source: str) -> None:
        self.words = words
        self.source = source
        self.at = 0

    def error(self, line: int, reason: str) -> ConntrackdSyntaxError:
        return ConntrackdSyntaxError(f"{self.source}:{line}: {reason}")

    def peek(self) -> Word | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def take(self) -> Word:
        word = self.words[self.at]
        self.at += 1
        return word

    def block(self, grammar: str, opened: Word | None, section: str) -> list[Statement]:
        """Statements up to the '}' that closes ``opened`` (None: the end of the file)."""
        statements: list[Statement] = []
        while True:
            word = self.peek()
            if word is None:
                if opened is not None:
                    raise self.error(opened.line, f"the block opened here ({section}) is not closed: missing '}}'")
                return statements
            if word.text == "}":
                self.take()
                if opened is None:
                    raise self.error(word.line, "'}' closes no block")
                return statements
            statements.append(self.statement(grammar, section))

    def statement(self, grammar: str, section: str) -> Statement:
        word = self.take()
        where = f"in {section}" if section else "at the top level"
        if word.text == "{":
            raise self.error(word.line, f"'{{' without a keyword {where}")
        rules = GRAMMAR[grammar]
        rule = rules.get(word.text)
        if rule is None:
            raise self.error(word.line, f"unknown keyword {word.text!r} {where}{_known(word.text, rules)}")
        statement = Statement(word.text, [], word.line, section=section)
        inner = f"{section}.{word.text}" if section else word.text
        if rule.until_for:  # Replicate ESTABLISHED TIME_WAIT for TCP
            while not self.next_is("for", "{", "}", None):
                statement.args.append(self.take())
            if not self.next_is("for"):
                raise self.error(word.line, f"{word.text}: expected 'STATE ... for PROTOCOL'")
            statement.args += [self.take(), self.argument(word)]
            return statement
        if rule.optional_block and self.next_is("{"):  # ExpectationSync { ftp sip }
            self.take()
            statement.items = self.list_block(inner, word)
            return statement
        if rule.block is None and (rule.optional_block or not rule.words):  # KEYWORD VALUE
            statement.args = [self.argument(word) for _ in range(rule.args)]
            for arg in statement.args:
                if not any(KINDS[kind][0](arg.text) for kind in rule.value):
                    kinds = " or ".join(KINDS[kind][1] for kind in rule.value)
                    raise self.error(arg.line, f"{word.text}: {arg.text!r} is not {kinds}")
            return statement
        while len(statement.args) < max(rule.args, rule.max_args) and not self.next_is("{", "}", None):
            statement.args.append(self.take())
        if len(statement.args) < rule.args:
            raise self.error(word.line, f"{word.text}: expected {rule.args} word(s) before '{{'")
        if not self.next_is("{"):
            following = self.peek()
            raise self.error(following.line if following else word.line,
                             f"{statement.text()}: expected '{{', not {following.text if following else 'the end of the file'!r}")
        self.take()
        if rule.words:  # Protocol Accept { TCP UDP }
            statement.items = self.list_block(inner, word)
            return statement
        assert rule.block is not None
        grammar_name = rule.block
        if rule.block == "Mode":
            mode = statement.arg().upper()
            mode = MODE_ALIASES.get(mode, mode)
            if mode not in MODES:
                raise self.error(word.line, f"Mode {statement.arg()!r}: unknown sync mode (known: {', '.join(MODES)})")
            grammar_name = f"Mode {mode}"
        statement.body = self.block(grammar_name, word, inner)
        return statement

    def next_is(self, *texts: str | None) -> bool:
        word = self.peek()
        return (word.text if word is not None else None) in texts

    def argument(self, keyword: Word) -> Word:
        word = self.peek()
        if word is None or word.text in ("{", "}"):
            line = word.line if word else keyword.line
            raise self.error(line, f"{keyword.text}: missing value")
        return self.take()

    def list_block(self, name: str, opened: Word) -> list[Word]:
        """The words up to '}' (protocol names, TCP states, helpers)."""
        items: list[Word] = []
        while True:
            word = self.peek()
            if word is None:
                raise self.error(opened.line, f"the block opened here ({name}) is not closed: missing '}}'")
            self.take()
            if word.text == "}":
                return items
            if word.text == "{":
                raise self.error(word.line, f"unexpected '{{' in {name}")
            items.append(word)


def _known(text: str, rules: dict[str, Rule]) -> str:
    same = [k for k in rules if k.lower() == text.lower()]
    if same:
        return f" (keywords are case-sensitive: {same[0]!r})"
    import difflib

    close = difflib.get_close_matches(text, list(rules), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse(text: str, source: str = "conntrackd.conf") -> list[Statement]:
    """The top-level statements of a conntrackd.conf; ConntrackdSyntaxError with the line."""
    parser = _Parser(tokens(text), source)
    return parser.block("", None, "")


def paths() -> set[str]:
    """Every statement path the grammar can produce (``Sync.Mode.PurgeTimeout`` ...): what
    the importer must answer for."""
    found: set[str] = set()

    def visit(grammar: str, prefix: str) -> None:
        for keyword, rule in GRAMMAR[grammar].items():
            path = f"{prefix}.{keyword}" if prefix else keyword
            found.add(path)
            for inner in [f"Mode {m}" for m in MODES] if rule.block == "Mode" else [rule.block] if rule.block else []:
                visit(inner, path)

    visit("", "")
    return found
