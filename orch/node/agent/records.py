"""The node's stored records, typed and versioned: containers, networks, volumes, projects.

Each file on disk carries a `version`. Files written before records had one (orch up to the
commit that added this module) are version 1 and are migrated when they are read; the agent
writes version 2 from then on. A new format adds a version and a `migrate_*` step here, so a
node whose state was written by any earlier orch starts on the new code and keeps everything
(tests/integration/agent/test_upgrade.py starts such a node for real).

A container is two things, kept apart:

- `docker`: its inspect view in docker's shape (Id, Created, State, Config, HostConfig, ...),
  which the API shows as it is and `ps`'s filters read;
- `orch`: what orch keeps for itself (`Private`: its cgroup, log options, network and mount
  plans, the last exit applied, restart counters), typed, and never shown by inspect.

In the agent a container is a `ContainerRecord`: the docker view as a dict (the shape every
route and filter reads) with the private part beside it as `.orch`. Saving one costs a
`model_dump` of the private part and one json.dumps (no validation: it was validated when it
was made or read); loading validates the whole file with pydantic (model_validate_json).

Networks are one file (the node's bridges, endpoints, published ports and addresses, the
values of orch.net.model and orch.net.ipam); volumes are one meta.json each, in the shape of
docker's volume inspect (orch.node.runtime.volumes.VolumeRecord); a project is the small
document `orch compose` keeps on the node (orch.compose.memory).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orch.errors import SystemFailure
from orch.net.ipam import IpamState
from orch.net.model import Endpoint, Network, Publication

VERSION = 2  # of every record family below; files without a version are version 1

# The private keys of a version 1 container record (top level, beside docker's), by field.
_V1_PRIVATE = {"_cgroup": "cgroup", "_log": "log", "_net": "net", "_mounts": "mounts", "_exited_pid": "exited_pid",
               "_pid_start": "pid_start",
               "_backoff_streak": "backoff_streak", "_stopped_by_user": "stopped_by_user"}


# -- containers ---------------------------------------------------------------------------------
class LogOptions(BaseModel):
    """json-file's rotation: the supervisor writes container.log with these."""

    max_size: int = 10 * 1024 * 1024
    max_file: int = 3


class Private(BaseModel):
    """What orch keeps of a container for itself; inspect never shows it."""

    model_config = ConfigDict(extra="forbid")

    cgroup: str = ""
    log: LogOptions = Field(default_factory=LogOptions)
    # The network plan (orch.node.agent.netspec, carried out by wiring.py and networking.py):
    # mode, networks with aliases and addresses, ports, dns, extra hosts. None: made before
    # the node had networks.
    net: dict[str, Any] | None = None
    mounts: list[dict[str, Any]] = Field(default_factory=list)  # the mount plan (agent/mountspec.py)
    exited_pid: int | None = None  # the pid whose exit was applied last: events are idempotent by pid
    pid_start: int | None = None  # pid 1's start time (/proc/PID/stat): a restarted supervisor adopts only that process
    backoff_streak: int = 0  # restarts in a row after short runs (orch.scheduler.restart)
    stopped_by_user: bool = False  # a person stopped it: restart policies leave it alone


class StateView(BaseModel):
    """docker's State, the part the agent changes most."""

    model_config = ConfigDict(extra="allow")

    Status: str
    Running: bool = False
    Paused: bool = False
    Restarting: bool = False
    OOMKilled: bool = False
    Dead: bool = False
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = ""
    FinishedAt: str = ""
    Health: dict[str, Any] | None = None


class DockerView(BaseModel):
    """docker's container inspect, as the agent stores it (NetworkSettings and Mounts are
    computed when asked for). Config and HostConfig are docker's, key for key."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    Id: str
    Created: str
    Path: str = ""
    Args: list[str] = Field(default_factory=list)
    State: StateView
    Image: str = ""
    Name: str
    RestartCount: int = 0
    Driver: str = "overlay"
    Platform: str = "linux"
    LogPath: str = ""
    config: dict[str, Any] = Field(default_factory=dict, alias="Config")  # (the name `Config` is pydantic's own)
    HostConfig: dict[str, Any] = Field(default_factory=dict)


class ContainerFile(BaseModel):
    """ORCH_ROOT/containers/<id>/state.json."""

    version: int = VERSION
    docker: DockerView
    orch: Private


class ContainerRecord(dict):
    """A container as the agent holds it: docker's inspect view (this dict) and orch's private
    part beside it (`.orch`, a `Private`)."""

    __slots__ = ("orch",)

    def __init__(self, docker: dict, orch: Private | None = None):
        super().__init__(docker)
        self.orch = orch if orch is not None else Private()

    def to_json(self) -> bytes:
        return json.dumps({"version": VERSION, "docker": self, "orch": self.orch.model_dump()}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, text: bytes | str, where: str = "state.json") -> "ContainerRecord":
        return load_container(text, where)[0]


def load_container(text: bytes | str, where: str = "state.json") -> tuple[ContainerRecord, int]:
    """A stored record of any version, and the version it was stored in; a file that does not
    fit is a one-line error."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version", 1)
        if version == 1:
            data = migrate_container_v1(data)
        elif version > VERSION:
            raise SystemFailure(f"{where}: a container record of version {version}, newer than this orch ({VERSION}); "
                                "run the orch that wrote it")
        record = ContainerFile.model_validate(data)
    except (ValueError, ValidationError) as err:
        raise SystemFailure(f"{where}: not a container record orch can read ({_first(err)})") from None
    return ContainerRecord(record.docker.model_dump(exclude_unset=True, by_alias=True), record.orch), version


def migrate_container_v1(data: dict) -> dict:
    """Version 1 (no version field): docker's keys with orch's private ones beside them at the
    top level, each starting with '_'."""
    private = {field: data[key] for key, field in _V1_PRIVATE.items() if key in data and data[key] is not None}
    docker = {k: v for k, v in data.items() if not k.startswith("_")}
    return {"version": VERSION, "docker": docker, "orch": private}


# -- networks ---------------------------------------------------------------------------------------
class NetworksFile(BaseModel):
    """ORCH_ROOT/networks/state.json: orch.net.manager.NetState, typed by its own value classes."""

    version: int = VERSION
    networks: dict[str, Network] = Field(default_factory=dict)
    endpoints: list[Endpoint] = Field(default_factory=list)
    publications: list[Publication] = Field(default_factory=list)
    ipam: IpamState = Field(default_factory=IpamState)
    retiring: list[Endpoint] = Field(default_factory=list)
    hidden: list[str] = Field(default_factory=list)
    # orch.net.overlay.ClusterView's JSON (absent on a node that was never in a cluster).
    cluster: dict[str, Any] = Field(default_factory=dict)


def load_networks(text: str | bytes, where: str = "networks/state.json"):
    """The NetState a stored file describes (version 1 had the same keys and no version)."""
    from orch.net.manager import NetState

    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("version", 1) > VERSION:
            raise SystemFailure(f"{where}: network state of version {data['version']}, newer than this orch ({VERSION})")
        f = NetworksFile.model_validate(data)
    except (ValueError, ValidationError) as err:
        raise SystemFailure(f"{where}: not network state orch can read ({_first(err)})") from None
    from orch.net.overlay import ClusterView

    try:
        cluster = ClusterView.from_json(f.cluster)
    except (KeyError, TypeError, ValueError) as err:
        raise SystemFailure(f"{where}: cluster: not a cluster view orch can read ({err})") from None
    return NetState(dict(f.networks), tuple(f.endpoints), tuple(f.publications), f.ipam, tuple(f.retiring),
                    frozenset(f.hidden), cluster)


def dump_networks(state) -> dict:
    return {"version": VERSION, **state.to_json()}


# -- projects -----------------------------------------------------------------------------------------
class RolledBack(BaseModel):
    """An update `up` rolled back (orch.compose.memory): the config hash, why, and when."""

    model_config = ConfigDict(extra="allow")

    hash: str
    reason: str = ""
    at: str = ""


class ProjectFile(BaseModel):
    """ORCH_ROOT/projects/<name>.json: what `orch compose` keeps on the node for a stack."""

    model_config = ConfigDict(extra="allow")  # the client's document; the agent does not read it

    version: int = VERSION
    rolled_back: dict[str, RolledBack] = Field(default_factory=dict)


def _first(err: Exception) -> str:
    if isinstance(err, ValidationError):
        e = err.errors()[0]
        return f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg'].lower()}"
    return str(err)
