"""Just enough roff (man(7) macros) to write manual pages from text with light markup.

Prose is written with two marks: ```code``` (bold, for what is typed: commands,
options, keys, paths) and ``*word*`` (italic, for what is replaced: FILE, N). Code
keeps its hyphens as ``\\-`` (a minus that copies as '-'); nothing else is interpreted.
A line of output never starts with '.' or "'" unless it is a macro.
"""

from __future__ import annotations

import re

_MARK = re.compile(r"`([^`]+)`|\*([^*\s][^*]*)\*")


def escape(text: str) -> str:
    """Plain text: backslashes escaped (and a leading '.' or ''' made literal by :func:`lines`)."""
    return text.replace("\\", "\\e")


def code(text: str) -> str:
    return escape(text).replace("-", "\\-")


def bold(text: str) -> str:
    return f"\\fB{code(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{code(text)}\\fR"


def prose(text: str) -> str:
    """Text with `code` and *replaceable* marks, in roff."""
    out, at = [], 0
    for match in _MARK.finditer(text):
        out.append(escape(text[at : match.start()]))
        out.append(bold(match.group(1)) if match.group(1) is not None else italic(match.group(2)))
        at = match.end()
    out.append(escape(text[at:]))
    return "".join(out)


def lines(*chunks: str) -> str:
    """Join roff chunks into a page: no empty lines, text lines made safe at their start."""
    out = []
    for chunk in chunks:
        for line in chunk.split("\n"):
            if not line.strip():
                continue
            if line[0] in ".'" and not _is_macro(line):
                line = "\\&" + line
            out.append(line)
    return "\n".join(out) + "\n"


_MACROS = {".ad", ".nh", ".TH", ".SH", ".SS", ".PP", ".TP", ".IP", ".RS", ".RE", ".nf", ".fi", ".B", ".I", ".BR", ".br", ".sp", ".in"}


def _is_macro(line: str) -> bool:
    return line.split(" ", 1)[0] in _MACROS


def heading(text: str) -> str:
    return f'.SH "{text.upper()}"'


def subheading(text: str) -> str:
    return f'.SS "{text}"'


def paragraph(text: str) -> str:
    return ".PP\n" + prose(text)


def item(tag: str, text: str) -> str:
    """A tagged paragraph: ``tag`` (roff already) on its own line, ``text`` (prose) indented."""
    return f".TP\n{tag}\n{prose(text)}"


def literal(text: str) -> str:
    """A block shown as typed (examples, files)."""
    body = "\n".join(code(line) if line else "\\&" for line in text.rstrip("\n").split("\n"))
    return f".PP\n.RS 4\n.nf\n{body}\n.fi\n.RE"
