"""Connection-tracking tables snep reads, watches and writes.

- :mod:`snep.kernel.base`: the interface (:class:`~snep.kernel.base.Kernel`), the
  counters, and the helpers a cache needs (``diff``, ``complete_update``, ``apply_to``);
- :mod:`snep.kernel.netlink`: the real table through ctnetlink (any namespace);
- :mod:`snep.kernel.ctnetlink`: the codec, the only place that knows the byte layouts;
- :mod:`snep.kernel.memory`: an in-memory table with traffic and time as inputs, for
  the simulation and the model tests.
"""
