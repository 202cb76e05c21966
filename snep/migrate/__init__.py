"""Bringing an existing setup over to snep.

- :mod:`.conntrackd_conf`: conntrackd.conf's syntax, read as conntrackd reads it;
- :mod:`.conntrackd`: a conntrackd.conf turned into snep.toml, and what did not carry
  over (``snep config import-conntrackd``; docs/migration.md).
"""
