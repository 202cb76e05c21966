"""snep: verified conntrack state synchronization for HA stateful firewalls.

The package is split the way the protocol libraries it imitates are (h11, aioquic):

- ``snep.entry``      the conntrack entry value every other module speaks;
- ``snep.wire``       sans-I/O codec of the sync protocol (frames, messages, MACs);
- ``snep.fsm``        sans-I/O state machines (roles, reliable sync), mirroring
                      ``spec/sync_protocol.tla``;
- ``snep.kernel``     conntrack adapters: ctnetlink and an in-memory kernel;
- the runtime, control socket and command line tie them to real I/O.
"""

__version__ = "0.1.0"
