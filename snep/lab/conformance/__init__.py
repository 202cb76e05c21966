"""The conformance suite: the failure scenarios (docs/architecture.md) on real kernels in namespaces.

- :mod:`.impls`: the synchronization under test (snep, conntrackd, none), pluggable;
- :mod:`.profile`: how much traffic and how long each phase lasts (ci, full);
- :mod:`.harness`: one run of a scenario: topology, traffic, failures, measurements;
- :mod:`.scenarios`: the scenarios, by name;
- :mod:`.report`: verdicts as numbers, side by side per implementation (Markdown, JSON).
"""
