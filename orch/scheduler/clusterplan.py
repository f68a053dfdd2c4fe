"""The cluster orchestrator's values: the state it reads and the plan of record changes it returns.

A plan is a list of changes to records (create, update or delete a task; update a service)
with the reason a person reads in `orch service ps` and the manager's log. Each change names
the mod revision of the record it replaces and the records it was decided from, so the
manager commits a plan as etcd transactions that compare them (nomad's `plan_apply.go`): a
stale leader, or a record that changed since it was read, fails the compare and the manager
plans again from the newer state. `batches` cuts a plan into transactions that fit etcd's
--max-txn-ops, keeping the changes of one service together where they fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from orch.cluster.records import Network, Node, Record, Service, Task
from orch.scheduler.model import Waiting
from orch.scheduler.taskindex import TaskIndex


@dataclass(frozen=True)
class ClusterState:
    """What the leader's cache holds: records by id, and each record key's mod revision.

    `revisions` maps a record's key (`Record.key`, e.g. `v1/tasks/<id>`) to the mod revision
    it was read at; a plan names them back. Missing keys are not compared (tests need none).
    """

    services: Mapping[str, Service] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    tasks: Mapping[str, Task] = field(default_factory=dict)
    revisions: Mapping[str, int] = field(default_factory=dict)
    # The tasks by service and what else a pass would work out from all of them, kept up to
    # date by the holder of the state (orch.scheduler.taskindex); None: the pass makes one.
    index: TaskIndex | None = None
    networks: Mapping[str, Network] = field(default_factory=dict)

    def revision(self, key: str) -> int | None:
        return self.revisions.get(key)


ChangeOp = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One record change. `record` is the new value (the old one for a delete).

    `base_revision` is the mod revision of the record as read (0 for a create: the key must
    not exist; None: not compared). `reads` are the keys of the other records the change was
    decided from (its service, the node it is placed on or taken off).
    """

    op: ChangeOp
    record: Record
    reason: str
    base_revision: int | None = None
    reads: tuple[str, ...] = ()
    # What the change does, as a person reads it: create, assign, pending, start (a prepared
    # task may run), shutdown, remove, delete, update (a service's UpdateStatus, spec or
    # endpoint), or allocate (a network's VNI and subnet).
    verb: str = ""

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def name(self) -> str:
        record = self.record
        if isinstance(record, Task):
            return record.name
        if isinstance(record, (Service, Network)):
            return record.spec.name
        return record.id

    def describe(self) -> str:
        return f"{self.verb or self.op:<9}{self.name}: {self.reason}"


@dataclass(frozen=True)
class Batch:
    """Changes for one etcd transaction: compare every key in `compares` (key -> mod
    revision), then apply every change."""

    changes: tuple[Change, ...]
    compares: Mapping[str, int]


@dataclass(frozen=True)
class ClusterPlan:
    changes: tuple[Change, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    warnings: tuple[str, ...] = ()
    next_check_at: float | None = None
    revisions: Mapping[str, int] = field(default_factory=dict)  # Every key in a change's reads.

    @property
    def converged(self) -> bool:
        return not self.changes and not self.waiting

    @property
    def failed(self) -> tuple[Waiting, ...]:
        return tuple(w for w in self.waiting if w.failed)

    def summary(self) -> str:
        if self.converged:
            return "cluster is up to date"
        counts: dict[str, int] = {}
        for change in self.changes:
            verb = change.verb or change.op
            counts[verb] = counts.get(verb, 0) + 1
        parts = [f"{n} to {verb}" for verb, n in counts.items()]
        if self.waiting:
            parts.append(f"{len(self.waiting)} waiting")
        return "cluster: " + ", ".join(parts)

    def explain(self, *, now: float | None = None) -> str:
        lines = [self.summary()]
        lines += ["  " + c.describe() for c in self.changes]
        for w in self.waiting:
            lines.append(f"  {'failed' if w.failed else 'waiting':<9}{w.service}: {w.reason}")
        lines += [f"  warning  {text}" for text in self.warnings]
        if self.next_check_at is not None and now is not None:
            lines.append(f"  next check in {max(0.0, self.next_check_at - now):.1f}s")
        return "\n".join(lines)

    def batches(self, max_ops: int = 128) -> list[Batch]:
        """The plan as transactions of at most `max_ops` changes and `max_ops` compares.

        Changes of one service stay in one transaction when they fit (a rolling step and its
        UpdateStatus commit together); a larger group is cut in order.
        """
        if max_ops < 2:
            raise ValueError("max_ops must be at least 2")
        out: list[Batch] = []
        changes: list[Change] = []
        compares: dict[str, int] = {}
        for group in self.groups():
            together: dict[str, int] = {}
            for change in group:
                together.update(self._compares(change))
            if changes and (len(changes) + len(group) > max_ops or len(compares.keys() | together.keys()) > max_ops):
                out.append(Batch(tuple(changes), compares))
                changes, compares = [], {}
            for change in group:
                mine = self._compares(change)
                more = sum(1 for key in mine if key not in compares)
                if changes and (len(changes) + 1 > max_ops or len(compares) + more > max_ops):
                    out.append(Batch(tuple(changes), compares))
                    changes, compares = [], {}
                changes.append(change)
                compares.update(mine)
        if changes:
            out.append(Batch(tuple(changes), compares))
        return out

    def groups(self) -> list[list[Change]]:
        """The changes by service, each service's own record last (when a group is cut, the
        earlier transactions still find the service at the revision they compare): the
        atomic groups for orch.cluster.store's `commit`."""
        groups: dict[str, list[Change]] = {}
        for change in self.changes:
            groups.setdefault(_group_of(change), []).append(change)
        for group in groups.values():
            group.sort(key=lambda c: isinstance(c.record, Service))
        return list(groups.values())

    def compares_of(self, change: Change) -> dict[str, int]:
        """The keys `change` must find at their revisions: its own record and what it read."""
        return self._compares(change)

    def _compares(self, change: Change) -> dict[str, int]:
        out = {key: self.revisions[key] for key in change.reads if key in self.revisions}
        if change.base_revision is not None:
            out[change.key] = change.base_revision
        return out


def _group_of(change: Change) -> str:
    record = change.record
    if isinstance(record, Task):
        return record.service_id
    if isinstance(record, Service):
        return record.id
    return change.key
