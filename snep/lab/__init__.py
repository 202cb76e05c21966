"""The lab: everything that exercises snep but is not part of a firewall's node.

- :mod:`snep.lab.sim`: the deterministic cluster simulation (real SyncNodes,
  in-memory kernels and network, a virtual clock), driven like the daemon;
- :mod:`snep.lab.netns`, :mod:`snep.lab.topology`, :mod:`snep.lab.traffic`: network
  namespaces, the client/firewalls/server stage, and the traffic checker;
- :mod:`snep.lab.demo`: the failover demo; :mod:`snep.lab.conformance`: the failure
  scenarios on real kernels, for snep and conntrackd;
- :mod:`snep.lab.tlc`, :mod:`snep.lab.tracecheck`, :mod:`snep.lab.spec_table`: the
  TLA+ model checker, trace validation, and the spec <-> code table.

The product (``snep.entry``, ``snep.wire``, ``snep.fsm``, ``snep.kernel``,
``snep.runtime``, ``snep.config``) never imports anything from here.
"""
