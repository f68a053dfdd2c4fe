"""The records a cluster keeps in etcd: typed, versioned pydantic values.

One key per record, under one prefix (`/orch/` by default), in a layout that carries its own
version: `v1/cluster`, `v1/nodes/<id>`, `v1/services/<id>`, `v1/tasks/<id>`, `v1/networks/<id>`,
`v1/secrets/<id>`, `v1/configs/<id>` (`record_key`). Values are the JSON of these models.

The names are docker's (swarmkit's `api/objects.proto` and `api/specs.proto`, in snake case), so
`orch service ps`, `node ls` and `service inspect` can print docker's columns and `--format`
placeholders: a service has a `spec` (what the user asked for) with a `task_template`, a
`spec_version`, a `previous_spec` for rollback and an `update_status`; a task has a `slot`, a
`desired_state` and a `status` in docker's TaskState vocabulary; a node has a `spec` (role,
availability, labels), a `description` (what the node reports) and a `status`.

Versioning: every record has `version`, the schema version it was written with. A reader
migrates an older record step by step (`migration` registers a step from version N to N+1)
before validation, and refuses a record from a newer orch with a one-line error, so managers
of two releases can share one etcd during an upgrade. Unknown keys are refused within a
version: a new field means a new version and a migration.

Records are frozen: deciders return changed copies (`model_copy(update=...)`) and never edit
what they were given. Durations are float seconds, times float seconds since the epoch.

**Boundary**: imports pydantic and the standard library only, so the pure deciders of
orch.scheduler can use these types (the import rule is tested).
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LAYOUT = "v1"  # The key layout's version: the first path element under the prefix.


class RecordError(Exception):
    """A stored record this orch cannot read (from a newer orch, or corrupt): one line.

    Not a ValueError, so pydantic lets it through its validators unchanged."""


class Value(BaseModel):
    """A part of a record: frozen, strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __deepcopy__(self, memo=None):
        """The value itself: values are frozen and never edited in place (the rule of this
        module), so a copy could only cost time."""
        return self


def shared(value: Value) -> Any:
    """A field default that every record parsed without the field shares. pydantic copies a
    default that does not hash (a Value with a list in it, such as `EndpointSpec()`) into each
    record it parses: two such copies were 60% of parsing a task (92 µs), and a new leader
    parses every task of the cluster while its lease waits. Values are frozen, so sharing one
    is safe."""
    return Field(default_factory=lambda: value)


class Record(Value):
    """A top-level record with its schema version and migrations.

    Subclasses set `KIND` (the key's collection) and, when their schema changes, bump
    `CURRENT` and register a migration from the previous version.
    """

    KIND: ClassVar[str] = ""
    CURRENT: ClassVar[int] = 1
    MIGRATIONS: ClassVar[dict[int, Callable[[dict], dict]]]

    version: int = 1
    id: str
    created_at: float = 0.0
    updated_at: float = 0.0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.MIGRATIONS = {}  # Each record type keeps its own steps.

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        version = data.get("version", cls.CURRENT)
        if not isinstance(version, int) or version < 1:
            raise RecordError(f"{cls.KIND or cls.__name__} record has an invalid version {version!r}")
        if version > cls.CURRENT:
            raise RecordError(
                f"{cls.KIND or cls.__name__} record {data.get('id', '?')} has schema version {version}, newer than this "
                f"orch reads ({cls.CURRENT}); upgrade orch on this manager"
            )
        while version < cls.CURRENT:
            step = cls.MIGRATIONS.get(version)
            if step is None:
                raise RecordError(f"no migration of {cls.KIND or cls.__name__} records from version {version}")
            data = step(dict(data))
            version += 1
            data["version"] = version
        if "version" not in data:  # made in code: the current schema
            data = {**data, "version": version}
        return data

    @property
    def key(self) -> str:
        """The record's etcd key below the cluster's prefix."""
        return record_key(self.KIND, self.id)

    def to_json(self) -> bytes:
        """Compact JSON without default values, in the fields' order; `version` is always
        written, first. (pydantic's own JSON writer: a third faster than a dict through
        json.dumps, and the leader writes every task at least twice.)"""
        body = self.model_dump_json(exclude_defaults=True).encode()
        if b'"version":' in body[:12]:
            return body
        return b'{"version":%d,%s' % (self.version, body[1:])

    @classmethod
    def from_json(cls, raw: bytes | str):
        """Parse, migrate and validate a stored value."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "value"
            raise RecordError(f"stored {cls.KIND} record is invalid: {where}: {first['msg']}") from None


def migration(cls: type[Record], from_version: int):
    """Register `fn(data) -> data` that turns a version `from_version` record into the next."""

    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        cls.MIGRATIONS[from_version] = fn
        return fn

    return register


def record_key(kind: str, record_id: str = "") -> str:
    """`v1/tasks/<id>`; the cluster record is `v1/cluster`. Prepend the store's prefix."""
    if kind == "cluster":
        return f"{LAYOUT}/cluster"
    return f"{LAYOUT}/{kind}/{record_id}"


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(seed: str | None = None) -> str:
    """A docker-style object id: 25 characters of [0-9a-z].

    Random by default; with `seed`, derived from it (the first 100 bits of its SHA-256, in
    hex, which is cheap enough for a pass that names 100,000 tasks), which lets a pure decider
    name the objects it creates deterministically from its inputs.
    """
    if seed is not None:
        return hashlib.sha256(seed.encode()).hexdigest()[:25]
    number = int.from_bytes(secrets.token_bytes(32), "big")
    chars = []
    for _ in range(25):
        number, digit = divmod(number, 36)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


# ---------------------------------------------------------------------------------------------
# Shared parts


class Platform(Value):
    os: str = ""
    architecture: str = ""


class Resources(Value):
    """CPU in nano-CPUs (1e9 = one CPU) and memory in bytes, as docker counts them."""

    nano_cpus: int = 0
    memory_bytes: int = 0


class Limits(Resources):
    pids: int = 0  # 0: no limit (docker's rule; -1 is also no limit at the node).


class ResourceRequirements(Value):
    limits: Limits = Limits()
    reservations: Resources = Resources()


class Driver(Value):
    name: str = ""
    options: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The cluster


class ClusterSettings(Value):
    """What `orch swarm init/update` sets (swarm's defaults)."""

    heartbeat_period: float = 5.0
    heartbeat_misses: int = 3  # A node is Down after this many periods without a heartbeat.
    task_history_limit: int = 5  # Dead tasks kept per slot (per node for global services).
    default_addr_pool: list[str] = Field(default_factory=lambda: ["10.0.0.0/8"])
    subnet_size: int = 24
    max_txn_ops: int = 128  # What the etcd in use accepts in one transaction.


class JoinTokens(Value):
    """The SHA-256 of each join token's secret part; the tokens themselves are never stored."""

    worker_hash: str = ""
    manager_hash: str = ""


class Cluster(Record):
    KIND: ClassVar[str] = "cluster"

    name: str = "default"
    ca_certificate: str = ""  # PEM of the cluster CA (nodes' certificates chain to it).
    join_tokens: JoinTokens = JoinTokens()
    settings: ClusterSettings = shared(ClusterSettings())


# ---------------------------------------------------------------------------------------------
# Nodes

NodeRole = Literal["manager", "worker"]
NodeAvailability = Literal["active", "pause", "drain"]
NodeState = Literal["unknown", "down", "ready", "disconnected"]


class NodeSpec(Value):
    """What the user sets with `node update` / `promote` / `demote`."""

    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    role: NodeRole = "worker"
    availability: NodeAvailability = "active"


class NodeDescription(Value):
    """What the node reports when it joins and on each session."""

    hostname: str = ""
    platform: Platform = Platform(os="linux", architecture="x86_64")
    resources: Resources = Resources()
    engine_labels: dict[str, str] = Field(default_factory=dict)
    engine_version: str = ""


class NodeStatus(Value):
    state: NodeState = "unknown"
    message: str = ""
    addr: str = ""  # The address the node's session comes from.


class ManagerStatus(Value):
    addr: str = ""  # host:port other nodes reach this manager at.
    reachability: Literal["unknown", "unreachable", "reachable"] = "unknown"
    leader: bool = False


class Node(Record):
    KIND: ClassVar[str] = "nodes"

    spec: NodeSpec = shared(NodeSpec())
    description: NodeDescription = shared(NodeDescription())
    status: NodeStatus = NodeStatus()
    manager_status: ManagerStatus | None = None


# ---------------------------------------------------------------------------------------------
# What a task runs (docker's TaskSpec and ContainerSpec)


class HealthConfig(Value):
    """docker's HealthConfig in seconds; test ["NONE"] turns the image's healthcheck off."""

    test: list[str] = Field(default_factory=list)
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None


class VolumeOptions(Value):
    no_copy: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    driver_config: Driver | None = None


class TmpfsOptions(Value):
    size_bytes: int | None = None
    mode: int | None = None


class Mount(Value):
    type: Literal["volume", "bind", "tmpfs"] = "volume"
    source: str = ""  # A volume's name (empty: anonymous) or a path on the node.
    target: str
    read_only: bool = False
    volume_options: VolumeOptions | None = None
    tmpfs_options: TmpfsOptions | None = None


class FileTarget(Value):
    """Where a secret or config appears in the container, and as whom."""

    name: str  # An absolute path, or a name under /run/secrets (secrets) or / (configs).
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444


class SecretReference(Value):
    secret_id: str = ""  # Filled when the secret record exists; the name is what the user wrote.
    secret_name: str
    file: FileTarget


class ConfigReference(Value):
    config_id: str = ""
    config_name: str
    file: FileTarget


class Ulimit(Value):
    name: str
    soft: int
    hard: int


class DNSConfig(Value):
    nameservers: list[str] = Field(default_factory=list)
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)


class ContainerSpec(Value):
    """The container of a task, in docker's words: `command` replaces the image's entrypoint
    and `args` its cmd (the node's create request calls them `entrypoint` and `cmd`)."""

    image: str
    labels: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    args: list[str] | None = None
    hostname: str = ""
    env: list[str] = Field(default_factory=list)  # KEY=VALUE
    dir: str = ""
    user: str = ""
    tty: bool = False
    open_stdin: bool = False
    read_only: bool = False
    init: bool | None = None
    mounts: list[Mount] = Field(default_factory=list)
    stop_signal: str = ""
    stop_grace_period: float | None = None
    healthcheck: HealthConfig | None = None
    hosts: list[str] = Field(default_factory=list)  # docker's "IP HOSTNAME" lines (extra_hosts).
    dns_config: DNSConfig | None = None
    secrets: list[SecretReference] = Field(default_factory=list)
    configs: list[ConfigReference] = Field(default_factory=list)
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    sysctls: dict[str, str] = Field(default_factory=dict)
    ulimits: list[Ulimit] = Field(default_factory=list)


class RestartPolicy(Value):
    """deploy.restart_policy / `--restart-*`, swarm's defaults: any, 5 s, no limit, no window."""

    condition: Literal["none", "on-failure", "any"] = "any"
    delay: float = 5.0
    max_attempts: int = 0  # 0: no limit.
    window: float = 0.0  # 0: max_attempts counts every restart.


class PlacementPreference(Value):
    spread: str  # node.labels.KEY or engine.labels.KEY


class Placement(Value):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[PlacementPreference] = Field(default_factory=list)
    max_replicas: int = 0  # max_replicas_per_node; 0: no limit.
    platforms: list[Platform] = Field(default_factory=list)


class NetworkAttachmentConfig(Value):
    target: str  # The network's name (or id).
    aliases: list[str] = Field(default_factory=list)


NO_PLACEMENT = Placement()  # the default every task parsed without a placement shares


class TaskSpec(Value):
    """docker's TaskTemplate: what every task of the service runs, copied into each task."""

    container_spec: ContainerSpec
    resources: ResourceRequirements = ResourceRequirements()
    restart_policy: RestartPolicy = RestartPolicy()
    placement: Placement = shared(NO_PLACEMENT)
    networks: list[NetworkAttachmentConfig] = Field(default_factory=list)
    log_driver: Driver | None = None
    force_update: int = 0  # `service update --force` bumps it: every task is replaced.


# ---------------------------------------------------------------------------------------------
# Services


class UpdateConfig(Value):
    """update_config / rollback_config, swarm's defaults."""

    parallelism: int = 1  # 0: all at once.
    delay: float = 0.0
    failure_action: Literal["pause", "continue", "rollback"] = "pause"
    monitor: float = 5.0
    max_failure_ratio: float = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"


class PortConfig(Value):
    name: str = ""
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    target_port: int
    published_port: int = 0  # 0: the cluster picks one (ingress mode).
    publish_mode: Literal["ingress", "host"] = "ingress"


class EndpointSpec(Value):
    mode: Literal["vip", "dnsrr"] = "vip"
    ports: list[PortConfig] = Field(default_factory=list)


class ServiceDependency(Value):
    """depends_on across services, which orch honours and swarm ignores."""

    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = "service_started"
    required: bool = True


class ServiceSpec(Value):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    task_template: TaskSpec
    mode: Literal["replicated", "global"] = "replicated"
    replicas: int = Field(default=1, ge=0)
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig()
    endpoint_spec: EndpointSpec = shared(EndpointSpec())
    depends_on: dict[str, ServiceDependency] = Field(default_factory=dict)  # By service name.


UpdateState = Literal["updating", "paused", "completed", "rollback_started", "rollback_paused", "rollback_completed"]


class UpdateStatus(Value):
    state: UpdateState
    started_at: float | None = None
    completed_at: float | None = None
    message: str = ""


class VirtualIP(Value):
    network_id: str
    addr: str  # CIDR, as docker shows it.


class Endpoint(Value):
    """What the cluster allocated for the service: its published ports and virtual IPs."""

    ports: list[PortConfig] = Field(default_factory=list)
    virtual_ips: list[VirtualIP] = Field(default_factory=list)


class Service(Record):
    KIND: ClassVar[str] = "services"
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    spec: ServiceSpec
    spec_version: int = 1  # Bumped by every update; a rollback restores the previous one.
    previous_spec: ServiceSpec | None = None
    previous_spec_version: int | None = None
    update_status: UpdateStatus | None = None
    endpoint: Endpoint = shared(Endpoint())
    # `--with-registry-auth`: the deployer's credentials for the image's registry, JSON
    # {"username", "password"} sealed with the managers' keyring (secretbox); opened only to
    # travel to the nodes that run the service's tasks.
    registry_auth: bytes = b""


def compute_spec_digest(spec: ServiceSpec) -> str:
    """What decides that a task is outdated: a digest of what its container is made from.

    It leaves out what does not change a running task (the replica count, the mode, update and
    rollback configs, depends_on, service labels) and the placement: a task whose node still
    satisfies a changed placement stays (swarm's rule), and one whose node no longer does is
    replaced by the orchestrator for that reason.
    """
    template = spec.task_template.model_dump(mode="json", exclude={"placement"})
    ports = spec.endpoint_spec.model_dump(mode="json")
    text = json.dumps({"task": template, "endpoint": ports}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Tasks


class TaskState(enum.StrEnum):
    """docker's TaskState, in its order: a task's state only moves forward."""

    NEW = "new"
    ALLOCATED = "allocated"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVE = "remove"
    ORPHANED = "orphaned"

    @property
    def rank(self) -> int:
        return _RANK[self]

    # States compare by their order, not as strings ("running" < "new" would be true).
    # (A pass compares states of 100,000 tasks: the rank is looked up, not converted, when the
    # other side is a state or its string.)
    def __lt__(self, other):
        return _RANK[self] < _rank(other)

    def __le__(self, other):
        return _RANK[self] <= _rank(other)

    def __gt__(self, other):
        return _RANK[self] > _rank(other)

    def __ge__(self, other):
        return _RANK[self] >= _rank(other)

    @property
    def terminal(self) -> bool:
        """The task has stopped for good (past running)."""
        return _RANK[self] > _RANK[TaskState.RUNNING]


_RANK = {state: i for i, state in enumerate(TaskState)}


def _rank(state) -> int:
    rank = _RANK.get(state)  # a TaskState, or its value (a StrEnum hashes and compares as its string)
    return rank if rank is not None else _RANK[TaskState(state)]
TERMINAL_STATES = frozenset(s for s in TaskState if s.terminal)


class ContainerStatus(Value):
    container_id: str = ""
    pid: int = 0
    exit_code: int | None = None


class PortStatus(Value):
    ports: list[PortConfig] = Field(default_factory=list)


class TaskStatus(Value):
    """What the task's node reports (and, before that, what the manager decided).

    `err` carries why a task cannot go on (docker's "no suitable node (...)"); `health` is the
    container's healthcheck status, which orch reports beside the state (docker holds a task
    in `starting` until it is healthy; orch shows both).
    """

    state: TaskState = TaskState.NEW
    timestamp: float = 0.0  # When the state last changed.
    message: str = ""
    err: str = ""
    container_status: ContainerStatus | None = None
    port_status: PortStatus | None = None
    health: Literal["none", "starting", "healthy", "unhealthy"] = "none"
    health_changed_at: float | None = None
    started_at: float | None = None  # When it became running.
    finished_at: float | None = None  # When it reached a terminal state.


class NetworkAttachment(Value):
    network_id: str
    addresses: list[str] = Field(default_factory=list)  # CIDR


# Task.to_json: id(spec) -> (the spec, its JSON). The spec is held, so its id stays its own.
_SPEC_JSON: dict[int, tuple[TaskSpec, bytes]] = {}
_SPEC_JSON_MAX = 4096
_NO_SPEC = {"spec"}


class Task(Record):
    KIND: ClassVar[str] = "tasks"

    service_id: str
    service_name: str = ""
    slot: int = 0  # Replicated services: 1, 2, ...; global services: 0 (the node names it).
    node_id: str = ""
    spec: TaskSpec
    spec_version: int = 1
    spec_digest: str = ""
    endpoint: EndpointSpec = shared(EndpointSpec())
    desired_state: TaskState = TaskState.RUNNING
    status: TaskStatus = TaskStatus()
    networks: list[NetworkAttachment] = Field(default_factory=list)
    # The restart policy's counters, carried from the task this one replaced after an exit
    # (orch.scheduler.restart): restarts in the slot, and restarts in a row after short runs.
    restart_count: int = 0
    backoff_streak: int = 0

    def to_json(self) -> bytes:
        """Record.to_json with the spec's JSON made once per spec value: the tasks of a service
        share one (SpecInterner), and the spec was half of encoding a task (the leader encodes
        each of 100,000 tasks at least twice in a deploy). The spec comes last."""
        spec = self.spec
        hit = _SPEC_JSON.get(id(spec))
        if hit is None or hit[0] is not spec:
            if len(_SPEC_JSON) >= _SPEC_JSON_MAX:
                _SPEC_JSON.clear()
            hit = _SPEC_JSON[id(spec)] = (spec, spec.model_dump_json(exclude_defaults=True).encode())
        body = self.model_dump_json(exclude_defaults=True, exclude=_NO_SPEC).encode()
        if b'"version":' not in body[:12]:
            body = b'{"version":%d,%s' % (self.version, body[1:])
        return b'%s,"spec":%s}' % (body[:-1], hit[1])

    @property
    def name(self) -> str:
        """docker's task name: SERVICE.SLOT, or SERVICE.NODEID for a global service."""
        return f"{self.service_name}.{self.slot if self.slot else self.node_id}"

    @property
    def container_name(self) -> str:
        """docker's container name for the task: SERVICE.SLOT.TASKID."""
        return f"{self.name}.{self.id}"


class SpecInterner:
    """Shares one TaskSpec value among the tasks that carry equal ones.

    Every task carries its service's TaskSpec (as swarm's do), so a task parsed from etcd
    holds its own copy: about 6.5 KB of Python objects per task, 650 MB at 100,000 tasks. The
    tasks of a service almost all carry the same spec; records are frozen, so one value can
    serve them all, and a task then costs about 1.4 KB. The leader's cache passes every task
    it reads through `task()`.
    """

    def __init__(self):
        self._specs: dict[str, TaskSpec] = {}
        # id -> JSON form of each shared spec (they stay alive in _specs, so their ids are
        # theirs): a task that already carries a shared spec costs a lookup, not a dump.
        self._json: dict[int, dict] = {}

    def task(self, task: Task) -> Task:
        """`task` with its spec shared. The task is one just parsed or just written, which
        nobody else reads yet: its spec is swapped for the equal shared one in place (a copy
        of the task cost 35 µs, more than parsing it)."""
        spec = task.spec
        if id(spec) in self._json:
            return task
        shared = self._specs.setdefault(self._key(task), spec)
        if id(shared) not in self._json:
            self._json[id(shared)] = shared.model_dump(mode="json", exclude_defaults=True)
        if shared is not spec:
            task.__dict__["spec"] = shared
        return task

    @staticmethod
    def _key(task: Task) -> str:
        """What tells equal specs apart: the task's spec digest (of its service's template
        without the placement, orchestrate.new_task) and its placement, when the task has a
        digest; else the spec's JSON (75 µs a task: it was most of a new leader's load)."""
        spec = task.spec
        if not task.spec_digest:
            return spec.model_dump_json()
        placement = "" if spec.placement is NO_PLACEMENT else spec.placement.model_dump_json()
        return f"{task.spec_digest}/{placement}"

    def as_json(self, spec: TaskSpec) -> dict:
        """spec.model_dump(mode="json", exclude_defaults=True), made once per shared spec; the
        caller must not change it."""
        hit = self._json.get(id(spec))
        return hit if hit is not None else spec.model_dump(mode="json", exclude_defaults=True)

    def __len__(self) -> int:
        return len(self._specs)


# ---------------------------------------------------------------------------------------------
# Networks, secrets, configs


class IPAMConfig(Value):
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""


class NetworkSpec(Value):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    driver: str = "overlay"
    options: dict[str, str] = Field(default_factory=dict)
    internal: bool = False
    attachable: bool = False
    ipam: list[IPAMConfig] = Field(default_factory=list)
    ingress: bool = False  # The routing mesh's network (docker's `ingress`), made by swarm init.


class Network(Record):
    """An overlay network. Version 2 added `spec.ingress` (version 1 records have none: false)."""

    KIND: ClassVar[str] = "networks"
    CURRENT: ClassVar[int] = 2

    spec: NetworkSpec
    vni: int = 0  # The VXLAN id, allocated by the leader.
    subnets: list[IPAMConfig] = Field(default_factory=list)  # What the leader allocated: subnet and gateway.

    @property
    def allocated(self) -> bool:
        return bool(self.vni and self.subnets)


@migration(Network, 1)
def _network_v1(data: dict) -> dict:
    return data  # `spec.ingress` is new and defaults to false: nothing to change


class SecretSpec(Value):
    """A secret. `data` is what the store holds: sealed with the managers' key at rest
    (orch.cluster.secretbox), plain only in a manager's memory and on a task's tmpfs."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    data: bytes = b""


class Secret(Record):
    KIND: ClassVar[str] = "secrets"

    spec: SecretSpec


class ConfigSpec(Value):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    data: bytes = b""


class Config(Record):
    KIND: ClassVar[str] = "configs"

    spec: ConfigSpec


RECORD_TYPES: dict[str, type[Record]] = {
    cls.KIND: cls for cls in (Cluster, Node, Service, Task, Network, Secret, Config)
}
