"""What a manager does for the CLI (and the Docker Engine API): reads and writes of the
cluster's desired state in the store, with docker's rules and one-line errors.

Any manager serves these, leader or not: they are transactions on etcd, and the leader's
watch sees them. Versions are the records' etcd mod revisions (docker's `Version.Index`), so
an update made from a stale read fails as docker's "update out of sequence" does.

A service's name is unique: a name key (`v1/names/services/<name>` -> id) is created in the
same transaction as the service, so two concurrent creates of one name cannot both win. A
stack deploy commits every service, network, secret and config of the stack in as few
transactions as possible, and refuses the whole stack before writing anything when one part
is wrong (nothing half-deployed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from orch.cluster import records as r
from orch.cluster.secretbox import Keyring
from orch.cluster.stackspec import NAMESPACE, StackDeployment
from orch.cluster.state import CLUSTER, CONFIGS, LEADER, NETWORKS, NODES, SECRETS, SERVICES, TASKS, _RecordKind
from orch.cluster.store import Delete, Put, StaleRecords, Store, Stored
from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from orch.scheduler.placement import parse_constraints


class NameEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = 1
    name: str
    id: str

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


SERVICE_NAMES = _RecordKind(f"{r.LAYOUT}/names/services/", NameEntry, id_field="name")
NETWORK_NAMES = _RecordKind(f"{r.LAYOUT}/names/networks/", NameEntry, id_field="name")
SECRET_NAMES = _RecordKind(f"{r.LAYOUT}/names/secrets/", NameEntry, id_field="name")
CONFIG_NAMES = _RecordKind(f"{r.LAYOUT}/names/configs/", NameEntry, id_field="name")
NAME_KIND = {SERVICES: SERVICE_NAMES, NETWORKS: NETWORK_NAMES, SECRETS: SECRET_NAMES, CONFIGS: CONFIG_NAMES}
NOUN = {SERVICES: "service", NETWORKS: "network", SECRETS: "secret", CONFIGS: "config", NODES: "node", TASKS: "task"}


def _out_of_sequence(what: str) -> Conflict:
    return Conflict(f"update out of sequence: {what} changed since it was read; read it again and retry")


@dataclass
class Control:
    store: Store
    keyring: Keyring | None = None
    clock: Callable[[], float] = time.time
    ids: Callable[[], str] = r.new_id

    # -- lookups ------------------------------------------------------------------------------
    async def _find(self, kind: _RecordKind, ref: str) -> Stored:
        """A record by full id, name, or unique id prefix (docker's rules)."""
        stored = await self.store.get(kind, ref) if ref and "/" not in ref else None
        if stored is not None:
            return stored
        names = NAME_KIND.get(kind)
        if names is not None and ref and "/" not in ref:
            entry = await self.store.get(names, ref)
            if entry is not None:
                stored = await self.store.get(kind, entry.record.id)
                if stored is not None:
                    return stored
        listing = await self.store.list(kind)
        if kind is NODES:
            by_name = [s for s in listing.items if s.record.spec.name == ref or s.record.description.hostname == ref]
            if len(by_name) == 1:
                return by_name[0]
        matches = [s for s in listing.items if ref and s.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"{NOUN[kind]} {ref} is ambiguous ({len(matches)} matches); give more characters of its id")
        raise NotFound(f"{NOUN[kind]} {ref} not found")

    async def cluster(self) -> Stored[r.Cluster]:
        stored = await self.store.get(CLUSTER)
        if stored is None:
            raise NotFound("this cluster has no cluster record; was it initialized with orch swarm init?")
        return stored

    # -- nodes --------------------------------------------------------------------------------
    async def nodes(self) -> list[Stored[r.Node]]:
        return await self._live((await self.store.list(NODES)).items)

    async def node(self, ref: str) -> Stored[r.Node]:
        return (await self._live([await self._find(NODES, ref)]))[0]

    async def _live(self, nodes: list[Stored[r.Node]]) -> list[Stored[r.Node]]:
        """Managers' status as it is now: the leader is who holds the leader key, a manager is
        reachable while its node is up (what a record holds of it dates from its join)."""
        leader = await self.store.get(LEADER)
        leader_id = leader.record.node_id if leader else ""
        out = []
        for s in nodes:
            m = s.record.manager_status
            if m is not None:
                live = m.model_copy(update={"leader": s.id == leader_id, "reachability":
                                            "unreachable" if s.record.status.state == "down" else
                                            "reachable" if s.record.status.state == "ready" else "unknown"})
                s = Stored(s.id, s.record.model_copy(update={"manager_status": live}), s.mod_revision, s.create_revision,
                           s.version, s.lease)
            out.append(s)
        return out

    async def update_node(self, ref: str, version: int | None, spec: r.NodeSpec) -> None:
        stored = await self.node(ref)
        if version is not None and version != stored.mod_revision:
            raise _out_of_sequence(f"node {ref}")
        if stored.record.spec.role == "manager" and spec.role == "worker":
            managers = [n for n in await self.nodes() if n.record.spec.role == "manager"]
            if len(managers) <= 1:
                raise Conflict(f"node {ref} is the last manager of the cluster; promote another node first")
        node = stored.record.model_copy(update={"spec": spec, "updated_at": self.clock()})
        try:
            await self.store.put(NODES, node, expect=stored.mod_revision)
        except StaleRecords:
            raise _out_of_sequence(f"node {ref}") from None

    async def remove_node(self, ref: str, *, force: bool = False) -> str:
        stored = await self.node(ref)
        node = stored.record
        if node.spec.role == "manager":
            raise Conflict(f"node {ref} is a cluster manager and is a member of the etcd cluster; "
                           f"demote it (orch node demote {ref}) before removing it")
        if node.status.state not in ("down", "unknown") and not force:
            raise Conflict(f"node {ref} is not down and can't be removed; stop it (orch swarm leave on it), "
                           f"or use --force")
        # Its tasks go with it: the orchestrator replaces them (the node is gone, not down).
        tasks = [t for t in (await self.store.list(TASKS)).items if t.record.node_id == node.id]
        ops = [Delete(NODES, node.id, stored.mod_revision)]
        ops += [Put(TASKS, t.record.model_copy(update={"desired_state": r.TaskState.REMOVE}), t.mod_revision)
                for t in tasks if t.record.desired_state < r.TaskState.REMOVE][: self.store.limits.max_txn_ops - 1]
        try:
            await self.store.txn(ops)
        except StaleRecords:
            raise _out_of_sequence(f"node {ref}") from None
        return node.id

    # -- services -----------------------------------------------------------------------------
    async def services(self) -> list[Stored[r.Service]]:
        return (await self.store.list(SERVICES)).items

    async def service(self, ref: str) -> Stored[r.Service]:
        return await self._find(SERVICES, ref)

    def check_spec(self, spec: r.ServiceSpec) -> None:
        if not spec.name or "/" in spec.name or "." in spec.name:
            raise InvalidArgument(f"invalid service name {spec.name!r}: use letters, digits, '-' and '_'")
        if not spec.task_template.container_spec.image:
            raise InvalidArgument(f"service {spec.name}: no image; give one (orch service create IMAGE)")
        if spec.mode == "global" and "replicas" in spec.model_fields_set and spec.replicas not in (0, 1):
            raise InvalidArgument(f"service {spec.name}: replicas can only be used with replicated mode")
        parse_constraints(spec.task_template.placement.constraints)
        seen = set()
        for port in spec.endpoint_spec.ports:
            key = (port.published_port, port.protocol)
            if port.published_port and key in seen:
                raise InvalidArgument(f"service {spec.name}: port {port.published_port}/{port.protocol} is published twice")
            seen.add(key)

    def _new_service(self, spec: r.ServiceSpec) -> r.Service:
        now = self.clock()
        return r.Service(id=self.ids(), spec=spec, created_at=now, updated_at=now)

    def _sealed_auth(self, auth: tuple[str, str] | None, service_id: str) -> bytes:
        if auth is None:
            return b""
        if self.keyring is None:
            raise Conflict("this manager has no key to seal registry credentials with")
        import json

        return self.keyring.seal(json.dumps({"username": auth[0], "password": auth[1]}).encode(),
                                 record_id=f"registry-auth/{service_id}")

    async def create_service(self, spec: r.ServiceSpec, *, registry_auth: tuple[str, str] | None = None) -> str:
        self.check_spec(spec)
        if await self.store.get(SERVICE_NAMES, spec.name) is not None:
            raise AlreadyExists(f"service {spec.name} already exists; use orch service update, or another name")
        await self._check_ports_free(spec, None)
        service = self._new_service(spec)
        if registry_auth is not None:
            service = service.model_copy(update={"registry_auth": self._sealed_auth(registry_auth, service.id)})
        try:
            await self.store.txn([Put(SERVICE_NAMES, NameEntry(name=spec.name, id=service.id), 0),
                                  Put(SERVICES, service, 0)])
        except StaleRecords:
            raise AlreadyExists(f"service {spec.name} already exists; use orch service update, or another name") from None
        return service.id

    async def _check_ports_free(self, spec: r.ServiceSpec, own_id: str | None) -> None:
        mine = {(p.published_port, p.protocol) for p in spec.endpoint_spec.ports if p.published_port}
        if not mine:
            return
        for other in await self.services():
            if other.id == own_id:
                continue
            theirs = {(p.published_port, p.protocol) for p in other.record.spec.endpoint_spec.ports if p.published_port}
            clash = mine & theirs
            if clash:
                port, proto = sorted(clash)[0]
                raise Conflict(f"port {port}/{proto} is already in use by service {other.record.spec.name}")

    def _updated(self, service: r.Service, spec: r.ServiceSpec) -> r.Service:
        return service.model_copy(update={
            "spec": spec, "spec_version": service.spec_version + 1, "previous_spec": service.spec,
            "previous_spec_version": service.spec_version, "update_status": None, "updated_at": self.clock(),
        })

    async def update_service(self, ref: str, version: int | None, spec: r.ServiceSpec, *,
                             registry_auth: tuple[str, str] | None = None) -> None:
        stored = await self.service(ref)
        if version is not None and version != stored.mod_revision:
            raise _out_of_sequence(f"service {ref}")
        if spec.name != stored.record.spec.name:
            raise InvalidArgument(f"service {ref}: renaming a service is not supported")
        self.check_spec(spec)
        await self._check_ports_free(spec, stored.id)
        updated = self._updated(stored.record, spec)
        if registry_auth is not None:
            updated = updated.model_copy(update={"registry_auth": self._sealed_auth(registry_auth, stored.id)})
        try:
            await self.store.put(SERVICES, updated, expect=stored.mod_revision)
        except StaleRecords:
            raise _out_of_sequence(f"service {ref}") from None

    async def rollback_service(self, ref: str) -> None:
        stored = await self.service(ref)
        service = stored.record
        if service.previous_spec is None:
            raise Conflict(f"service {service.spec.name} has no previous spec to roll back to")
        rolled = service.model_copy(update={
            "spec": service.previous_spec, "spec_version": service.spec_version + 1,
            "previous_spec": service.spec, "previous_spec_version": service.spec_version,
            "update_status": r.UpdateStatus(state="rollback_started", started_at=self.clock(),
                                            message="manually requested rollback"),
            "updated_at": self.clock(),
        })
        try:
            await self.store.put(SERVICES, rolled, expect=stored.mod_revision)
        except StaleRecords:
            raise _out_of_sequence(f"service {ref}") from None

    async def remove_service(self, ref: str) -> str:
        stored = await self.service(ref)
        try:
            await self.store.txn([Delete(SERVICES, stored.id, stored.mod_revision),
                                  Delete(SERVICE_NAMES, stored.record.spec.name)])
        except StaleRecords:
            raise _out_of_sequence(f"service {ref}") from None
        return stored.id

    async def tasks(self) -> list[Stored[r.Task]]:
        return (await self.store.list(TASKS)).items

    # -- networks -----------------------------------------------------------------------------
    async def networks(self) -> list[Stored[r.Network]]:
        return (await self.store.list(NETWORKS)).items

    async def network(self, ref: str) -> Stored[r.Network]:
        return await self._find(NETWORKS, ref)

    async def create_network(self, spec: r.NetworkSpec) -> str:
        """`orch network create -d overlay` on a manager: the record; the leader allocates it."""
        existing = await self.networks()
        check_network_spec(spec, [n.record for n in existing])
        if await self.store.get(NETWORK_NAMES, spec.name) is not None:
            raise AlreadyExists(f"network with name {spec.name} already exists")
        now = self.clock()
        net = r.Network(id=self.ids(), spec=spec, created_at=now, updated_at=now)
        try:
            await self.store.txn([Put(NETWORK_NAMES, NameEntry(name=spec.name, id=net.id), 0), Put(NETWORKS, net, 0)])
        except StaleRecords:
            raise AlreadyExists(f"network with name {spec.name} already exists") from None
        return net.id

    async def remove_network(self, ref: str) -> str:
        stored = await self.network(ref)
        net = stored.record
        for s in await self.services():
            spec = s.record.spec
            uses = any(a.target in (net.id, net.spec.name) for a in spec.task_template.networks)
            uses = uses or (net.spec.ingress and any(p.publish_mode == "ingress" for p in spec.endpoint_spec.ports))
            if uses:
                raise Conflict(f"network {net.spec.name} is in use by service {spec.name}; remove the service first")
        try:
            await self.store.txn([Delete(NETWORKS, net.id, stored.mod_revision), Delete(NETWORK_NAMES, net.spec.name)])
        except StaleRecords:
            raise _out_of_sequence(f"network {ref}") from None
        return net.id

    # -- stacks -------------------------------------------------------------------------------
    async def deploy_stack(self, deployment: StackDeployment, *, prune: bool = False,
                           registry_auth: dict[str, tuple[str, str]] | None = None) -> list[str]:
        """Create or update every part of the stack; the lines `stack deploy` prints."""
        ns = deployment.namespace
        for spec in deployment.services:
            self.check_spec(spec)
        services = {s.record.spec.name: s for s in await self.services()}
        networks = {n.record.spec.name: n for n in (await self.store.list(NETWORKS)).items}
        secrets = {s.record.spec.name: s for s in (await self.store.list(SECRETS)).items}
        configs = {c.record.spec.name: c for c in (await self.store.list(CONFIGS)).items}
        for spec in deployment.networks:
            if spec.name not in networks:
                check_network_spec(spec, [n.record for n in networks.values()])
        for name in deployment.external_networks:
            if name not in networks:
                raise NotFound(f"stack {ns}: network {name} is declared as external, but could not be found; "
                               f"create it first (orch network create --driver overlay {name})")
        for name, have in (("secret", secrets), ("config", configs)):
            for ext in getattr(deployment, f"external_{name}s"):
                if ext not in have:
                    raise NotFound(f"stack {ns}: {name} {ext} is declared as external, but could not be found; "
                                   f"create it first (orch {name} create {ext} FILE)")
        for spec in deployment.services:
            other = services.get(spec.name)
            if other is not None and other.record.spec.labels.get(NAMESPACE) != ns:
                raise Conflict(f"stack {ns}: service {spec.name} exists and is not part of this stack")
        groups: list[list] = []
        lines: list[str] = []
        now = self.clock()
        for spec in deployment.networks:
            if spec.name not in networks:
                net = r.Network(id=self.ids(), spec=spec, created_at=now, updated_at=now)
                groups.append([Put(NETWORK_NAMES, NameEntry(name=spec.name, id=net.id), 0), Put(NETWORKS, net, 0)])
                lines.append(f"Creating network {spec.name}")
        for kind, names, specs, have, model in ((SECRETS, SECRET_NAMES, deployment.secrets, secrets, r.Secret),
                                                (CONFIGS, CONFIG_NAMES, deployment.configs, configs, r.Config)):
            for spec in specs:
                if spec.name in have:
                    continue  # secrets and configs are immutable; the existing one is used (docker)
                record_id = self.ids()
                if kind is SECRETS:
                    spec = self._sealed(spec, record_id)
                record = model(id=record_id, spec=spec, created_at=now, updated_at=now)
                groups.append([Put(names, NameEntry(name=spec.name, id=record_id), 0), Put(kind, record, 0)])
                lines.append(f"Creating {NOUN[kind]} {spec.name}")
        auths = registry_auth or {}
        for spec in deployment.services:
            other = services.get(spec.name)
            auth = auths.get(spec.name)
            if other is None:
                service = self._new_service(spec)
                if auth is not None:
                    service = service.model_copy(update={"registry_auth": self._sealed_auth(auth, service.id)})
                groups.append([Put(SERVICE_NAMES, NameEntry(name=spec.name, id=service.id), 0), Put(SERVICES, service, 0)])
                lines.append(f"Creating service {spec.name}")
            elif other.record.spec != spec or auth is not None:
                updated = self._updated(other.record, spec) if other.record.spec != spec else other.record
                if auth is not None:
                    updated = updated.model_copy(update={"registry_auth": self._sealed_auth(auth, other.id)})
                groups.append([Put(SERVICES, updated, other.mod_revision)])
                lines.append(f"Updating service {spec.name} (id: {other.id})")
        if prune:
            wanted = {s.name for s in deployment.services}
            for name, other in services.items():
                if other.record.spec.labels.get(NAMESPACE) == ns and name not in wanted:
                    groups.append([Delete(SERVICES, other.id, other.mod_revision), Delete(SERVICE_NAMES, name)])
                    lines.append(f"Removing service {name}")
        result = await self.store.commit(groups)
        if result.rejected:
            raise _out_of_sequence(f"stack {ns} (another deploy changed it meanwhile; the parts it did not touch were written)")
        return lines

    def _sealed(self, spec: r.SecretSpec, record_id: str) -> r.SecretSpec:
        if self.keyring is None:
            raise Conflict("this manager has no key to seal secrets with")
        return spec.model_copy(update={"data": self.keyring.seal(spec.data, record_id=record_id)})

    async def stacks(self) -> dict[str, list[Stored[r.Service]]]:
        out: dict[str, list[Stored[r.Service]]] = {}
        for s in await self.services():
            ns = s.record.spec.labels.get(NAMESPACE)
            if ns:
                out.setdefault(ns, []).append(s)
        return out

    async def remove_stack(self, ns: str) -> list[str]:
        """Remove the stack's services, then its networks, secrets and configs (docker's order)."""
        lines: list[str] = []
        groups: list[list] = []
        found = False
        for s in sorted(await self.services(), key=lambda s: s.record.spec.name):
            if s.record.spec.labels.get(NAMESPACE) == ns:
                found = True
                groups.append([Delete(SERVICES, s.id, s.mod_revision), Delete(SERVICE_NAMES, s.record.spec.name)])
                lines.append(f"Removing service {s.record.spec.name}")
        for kind in (NETWORKS, SECRETS, CONFIGS):
            for item in (await self.store.list(kind)).items:
                if item.record.spec.labels.get(NAMESPACE) == ns:
                    found = True
                    groups.append([Delete(kind, item.id, item.mod_revision), Delete(NAME_KIND[kind], item.record.spec.name)])
                    lines.append(f"Removing {NOUN[kind]} {item.record.spec.name}")
        if not found:
            raise NotFound(f"nothing found in stack: {ns}")
        result = await self.store.commit(groups)
        if result.rejected:
            raise _out_of_sequence(f"stack {ns}")
        return lines


# The driver options an overlay network takes (docker's): its MTU. `encrypted` is refused:
# orch has no IPsec (XFRM) transport for VXLAN yet, and sending in the clear what the user
# asked to encrypt would be worse than saying no.
OVERLAY_OPTIONS = ("com.docker.network.driver.mtu",)
ENCRYPTED = "encrypted"


def check_network_spec(spec: r.NetworkSpec, others: list[r.Network]) -> None:
    """A new overlay network's spec, checked as docker does, in one line each."""
    import ipaddress
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", spec.name):
        raise InvalidArgument(f"invalid network name {spec.name!r}: use letters, digits, '_', '.', '-', starting with a letter or digit")
    if spec.driver != "overlay":
        raise InvalidArgument(f"network {spec.name}: driver {spec.driver!r} is one node's; a cluster's networks use the "
                              "overlay driver (-d overlay)")
    for key in spec.options:
        if key == ENCRYPTED:
            raise InvalidArgument(f"network {spec.name}: encrypted overlay networks are not supported: orch has no IPsec for "
                                  "VXLAN yet; leave out --opt encrypted and keep the underlay trusted")
        if key not in OVERLAY_OPTIONS:
            raise InvalidArgument(f"network {spec.name}: unknown driver option {key!r}; the overlay driver takes none")
    if spec.ingress and any(o.spec.ingress for o in others):
        other = next(o for o in others if o.spec.ingress)
        raise Conflict(f"network {spec.name}: the cluster has an ingress network already ({other.spec.name}); remove it first")
    for ipam in spec.ipam:
        if not ipam.subnet:
            continue
        try:
            subnet = ipaddress.IPv4Network(ipam.subnet, strict=True)
        except ValueError as err:
            raise InvalidArgument(f"network {spec.name}: invalid subnet {ipam.subnet}: {err}") from None
        if subnet.prefixlen > 29:
            raise InvalidArgument(f"network {spec.name}: subnet {subnet} is too small for an overlay network (at most /29)")
        for other in others:
            for sub in list(other.subnets) + list(other.spec.ipam):
                if sub.subnet and subnet.overlaps(ipaddress.IPv4Network(sub.subnet, strict=False)):
                    raise Conflict(f"network {spec.name}: subnet {subnet} overlaps network {other.spec.name} ({sub.subnet})")
        if ipam.gateway:
            try:
                gateway = ipaddress.IPv4Address(ipam.gateway)
            except ValueError:
                raise InvalidArgument(f"network {spec.name}: invalid gateway {ipam.gateway}") from None
            if gateway not in subnet:
                raise InvalidArgument(f"network {spec.name}: gateway {gateway} is not in subnet {subnet}")


def ingress_ops(now: float, ids: Callable[[], str] = r.new_id) -> list:
    """The records of the routing mesh's network, which `swarm init` writes (docker's `ingress`)."""
    net = r.Network(id=ids(), spec=r.NetworkSpec(name="ingress", ingress=True), created_at=now, updated_at=now)
    return [Put(NETWORK_NAMES, NameEntry(name="ingress", id=net.id), 0), Put(NETWORKS, net, 0)]


def labelled(items: Iterable[Stored], ns: str) -> list[Stored]:
    return [s for s in items if s.record.spec.labels.get(NAMESPACE) == ns]
