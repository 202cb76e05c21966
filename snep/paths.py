"""Where a node keeps its files unless its config says otherwise.

A module of its own, free of imports, because both the config parser and the light
control client (``snep notify``, ``snep ctl ready``: run by keepalived on every
transition and every second) need these defaults, and the client must start fast.
"""

#: the control socket of a node run by systemd (RuntimeDirectory=snep)
CONTROL_SOCKET = "/run/snep/snep.sock"

#: the newest epoch the node has seen, persisted across restarts (StateDirectory=snep)
STATE_FILE = "/var/lib/snep/state"
