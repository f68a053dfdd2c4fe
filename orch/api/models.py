"""Request bodies of the agent's container API (pydantic: unknown keys and wrong types are a
one-line invalid-argument error naming the field)."""

from typing import Literal

MAX_INT64 = 2**63 - 1  # docker's sizes and limits are int64

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthcheckBody(Body):
    """docker's HealthConfig in seconds; test ["NONE"] turns the image's healthcheck off."""

    test: list[str] = Field(min_length=1)
    interval: float | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, ge=0)
    retries: int | None = Field(default=None, ge=0)
    start_period: float | None = Field(default=None, ge=0)
    start_interval: float | None = Field(default=None, ge=0)


class RestartPolicyBody(Body):
    name: Literal["no", "always", "on-failure", "unless-stopped", ""] = "no"
    maximum_retry_count: int = Field(default=0, ge=0)
    # deploy.restart_policy (swarm's): attempts for any policy, a fixed delay between restarts
    # instead of the doubling back-off, and how long a run must last to count as a success.
    max_attempts: int = Field(default=0, ge=0)
    delay: float | None = Field(default=None, ge=0)
    window: float | None = Field(default=None, ge=0)


class NetworkAttachment(Body):
    name: str
    aliases: list[str] = Field(default_factory=list)
    ipv4_address: str | None = None


class PortBinding(Body):
    host_ip: str = ""
    host_port: str | int = ""
    container_port: str | int
    protocol: str = "tcp"


class MountRequest(Body):
    type: str = "volume"
    source: str = ""
    target: str
    read_only: bool = False
    tmpfs_size: int | None = None
    nocopy: bool = False


class UlimitBody(Body):
    """docker's Ulimit: soft and hard, -1 for unlimited."""

    name: str
    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)


class CreateRequest(Body):
    image: str
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = Field(default_factory=list)
    name: str | None = None
    hostname: str | None = None
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    open_stdin: bool = False
    memory: int | None = Field(default=None, ge=6 * 1024 * 1024, le=MAX_INT64)
    memory_swap: int | None = Field(default=None, ge=-1, le=MAX_INT64)
    nano_cpus: int | None = Field(default=None, ge=0)  # the agent checks it against the node's CPUs
    pids_limit: int | None = None
    network: str | None = None
    # Namespaces shared with the host (docker's HostConfig.PidMode, IpcMode, UsernsMode; the
    # agent refuses what orch does not do in one line).
    pid_mode: str | None = None
    ipc_mode: str | None = None
    userns_mode: str | None = None
    auto_remove: bool = False
    init: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    # Supervision (orch.node.agent.supervision): healthcheck, restart policy, graceful stop.
    healthcheck: HealthcheckBody | None = None
    restart_policy: RestartPolicyBody | None = None
    stop_signal: str | None = None
    stop_timeout: float | None = Field(default=None, ge=-1)
    log_max_size: int = Field(default=10 * 1024 * 1024, ge=1, le=MAX_INT64)
    log_max_file: int = 3
    # Networks and volumes (agent/wiring.py reads them).
    network_mode: str | None = None
    networks: list[NetworkAttachment] = Field(default_factory=list)
    ports: list[PortBinding] = Field(default_factory=list)
    publish_all: bool = False
    mounts: list[MountRequest] = Field(default_factory=list)
    volumes_from: list[str] = Field(default_factory=list)
    dns: list[str] = Field(default_factory=list)
    dns_search: list[str] = Field(default_factory=list)
    extra_hosts: list[str] = Field(default_factory=list)
    # Privileges and limits (orch.node.runtime.security checks them): docker's CapAdd, CapDrop,
    # ReadonlyRootfs, Sysctls, Ulimits. privileged: true is refused (not supported).
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    read_only: bool = False
    privileged: bool = False
    sysctls: dict[str, str] = Field(default_factory=dict)
    ulimits: list[UlimitBody] = Field(default_factory=list)
    # docker's SecurityOpt: seccomp=unconfined|<profile JSON>, no-new-privileges[=BOOL].
    security_opt: list[str] = Field(default_factory=list)


class ExecRequest(Body):
    cmd: list[str] = Field(min_length=1)
    env: list[str] = Field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    interactive: bool = False
    detach: bool = False


class CreateResponse(BaseModel):
    Id: str
    Name: str
    Warnings: list[str] = Field(default_factory=list)


class ExecResponse(BaseModel):
    Id: str  # the exec's id


class WaitResponse(BaseModel):
    StatusCode: int
    Error: dict | None = None


class PruneRequest(Body):
    containers: bool = True
    images: bool = True
