"""The conformance suite: the failure scenarios (docs/architecture.md) on real kernels in namespaces.

- :mod:`.impls`: the synchronization under test (snep, snep-commit, conntrackd, none), pluggable;
- :mod:`.profile`: how much traffic and how long each phase lasts (ci, full, fast);
- :mod:`.harness`: one run of a scenario: topology, traffic, failures, measurements;
- :mod:`.measure`: the failover figures from recorded samples (gap, kernel ready, late);
- :mod:`.scenarios`: the scenarios, by name;
- :mod:`.report`: verdicts as numbers, side by side per implementation (Markdown, JSON).
"""
