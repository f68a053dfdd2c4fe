"""A cluster plan (orch.scheduler.clusterplan) as the store's ops, and the store's Kinds.

The orchestrator decides in pure values: record changes, each with the mod revision of the
record it replaces (0: it must not exist) and the keys of the records it was decided from.
The store commits groups of ops atomically (`Store.commit`, nomad's plan_apply: a group whose
compares fail is rejected, the others commit). One group per service: its task changes as
`Put`/`Delete` that expect their revisions, `Check`s for the nodes and the service they read,
and the service's own record last.

`KINDS` is where each record type lives: `Kind("v1/tasks/", Task)` and so on, the layout of
`records.record_key`, so the manager, the watch cache and the tests name them once.
"""

from __future__ import annotations

from orch.cluster.records import LAYOUT, RECORD_TYPES
from orch.cluster.store import Check, Delete, Kind, Op, Put
from orch.scheduler.clusterplan import ClusterPlan, ClusterState

KINDS: dict[str, Kind] = {
    name: Kind(f"{LAYOUT}/cluster", cls, singleton=True) if name == "cluster" else Kind(f"{LAYOUT}/{name}/", cls)
    for name, cls in RECORD_TYPES.items()
}


def kind_and_id(key: str) -> tuple[Kind, str]:
    """`v1/nodes/n1` -> (the nodes Kind, "n1")."""
    _, name, *rest = key.split("/", 2)
    return KINDS[name], (rest[0] if rest else "")


def compute_ops(plan: ClusterPlan) -> list[list[Op]]:
    """The plan's changes as atomic groups of store ops, one group per service."""
    out = []
    for group in plan.groups():
        ops: list[Op] = []
        written = set()
        for change in group:
            kind = KINDS[change.record.KIND]
            written.add(change.key)
            if change.op == "delete":
                ops.append(Delete(kind, change.record.id, expect=change.base_revision))
            else:
                ops.append(Put(kind, change.record, expect=change.base_revision))
        checks: dict[str, int] = {}
        for change in group:
            for key, revision in plan.compares_of(change).items():
                if key not in written:
                    checks[key] = revision
        ops += [Check(*kind_and_id(key), revision) for key, revision in sorted(checks.items())]
        out.append(ops)
    return out


async def read_state(store) -> ClusterState:
    """The services, nodes and tasks in `store` with their mod revisions, as the orchestrator
    reads them (a full read, for a first load and for tests; the leader's cache then follows
    a watch)."""
    found = {}
    revisions: dict[str, int] = {}
    for name in ("services", "nodes", "tasks", "networks"):
        listing = await store.list(KINDS[name])
        found[name] = {item.id: item.record for item in listing.items}
        revisions.update({item.record.key: item.mod_revision for item in listing.items})
    return ClusterState(found["services"], found["nodes"], found["tasks"], revisions, networks=found["networks"])
