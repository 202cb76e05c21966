"""The whole spec <-> code table: every module that implements a spec action, loaded.

The product's machines register their counterparts as they are imported
(:mod:`snep.fsm.spec_map`); the environment's actions (traffic, expiry, a failing
process, links) are the lab's: the simulation and its in-memory kernel. Loading the
table is therefore the lab's job, so that the product never imports the simulation.
"""

from __future__ import annotations

from snep.fsm import spec_map


def load_all() -> dict[str, list[str]]:
    """Import every module that registers counterparts, and return the registry."""
    import snep.fsm.node  # noqa: F401  (imports role, sender, receiver)
    import snep.lab.sim  # noqa: F401  (the environment: kernel traffic, links, failures)

    return spec_map.REGISTRY
