"""Logging to stderr, systemd style.

Under systemd (``JOURNAL_STREAM`` set) each line starts with the syslog priority in
angle brackets (``<4>`` = warning), which journald turns into the record's priority;
on a terminal the level is spelled out. ``notice`` sits between info and warning, as
in syslog: start-up, role changes and shutdown are notices.
"""

from __future__ import annotations

import logging
import os
import sys

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": NOTICE, "warning": logging.WARNING, "error": logging.ERROR}
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, NOTICE: 5, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

log = logging.getLogger("snep")


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.journal:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{message}"
        return f"{self.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d} {record.levelname.lower()}: {message}"


def setup(level: str = "info") -> logging.Logger:
    """Send snep's log to stderr at ``level``; idempotent (reload calls it again)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    log.handlers[:] = [handler]
    log.setLevel(LEVELS[level])
    log.propagate = False
    return log


def notice(message: str, *args: object) -> None:
    log.log(NOTICE, message, *args)
