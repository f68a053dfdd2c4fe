"""A container's privileges and limits from its create request: pure, like netspec and mountspec.

The request carries docker's HostConfig fields (cap_add, cap_drop, read_only, privileged,
sysctls, ulimits, security_opt). `compute_security_plan` checks them with orch.node.runtime.security's rules
and returns what the ContainerConfig and the record need: the capability list of the process,
its rlimits, the sysctls, the read-only flag, and the HostConfig fields `inspect` shows in
docker's names. create.py passes in what only the node knows: the capabilities its processes
hold (what ALL means) and the namespaces the container gets.
"""

from dataclasses import dataclass

from orch.errors import InvalidArgument
from orch.node.runtime import security
from orch.node.runtime.mount import Mount

# The files orch writes for a container (networking.py's _file_mounts).
NODE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


@dataclass(frozen=True)
class SecurityPlan:
    capabilities: tuple[str, ...]
    rlimits: tuple[tuple[str, int, int], ...]
    sysctls: dict
    readonly_rootfs: bool
    host_config: dict
    seccomp: str = "default"  # "default", "unconfined" or a profile's JSON text
    no_new_privileges: bool = True


def compute_security_plan(*, cap_add=(), cap_drop=(), read_only=False, privileged=False, sysctls=None, ulimits=(),
                          security_opt=(), available, namespaces, own_netns: bool) -> SecurityPlan:
    """Check the request's privilege and limit fields; `ulimits` are {name, soft, hard} dicts."""
    if privileged:
        raise InvalidArgument("privileged: true is not supported by orch (it would hand the container the host's devices and "
                              "every capability); grant only what the program needs with cap_add")
    add, drop = security.compute_cap_add_drop(cap_add, cap_drop, add_where="cap_add", drop_where="cap_drop")
    capabilities = security.compute_capabilities(add, drop, available=available)
    sysctls = dict(sysctls or {})
    security.check_sysctls(sysctls, namespaces=namespaces, own_netns=own_netns)
    limits: dict[str, tuple[str, int, int]] = {}
    for u in ulimits:
        # A later entry for the same name wins, as docker's --ulimit map has it.
        limits[u["name"]] = security.check_ulimit(u["name"], int(u["soft"]), int(u["hard"]))
    rlimits = tuple(limits.values())
    # A profile arrives inline (the client read the file); it is checked here for every client.
    options = security.parse_security_opts(security_opt, where="security_opt")
    host = {
        "CapAdd": list(add) or None,
        "CapDrop": list(drop) or None,
        "Privileged": False,
        "ReadonlyRootfs": bool(read_only),
        "Ulimits": [{"Name": name, "Hard": hard, "Soft": soft} for name, soft, hard in rlimits] or None,
    }
    if sysctls:
        host["Sysctls"] = sysctls
    host["SecurityOpt"] = options.to_opts() or None
    # orch keeps no_new_privs on unless told otherwise (docker's default is off).
    nnp = True if options.no_new_privileges is None else options.no_new_privileges
    return SecurityPlan(capabilities, rlimits, sysctls, bool(read_only), host, options.seccomp, nnp)


def compute_readonly_file_mounts(mounts, read_only: bool) -> tuple[Mount, ...]:
    """With a read-only root, the /etc files orch writes are mounted read-only too, as docker
    mounts them (moby's NetworkMounts: writable only when the root is). They are recognized by
    the options networking gives them, ("bind",): a user's own bind over /etc/hosts keeps its."""
    if not read_only:
        return tuple(mounts)
    return tuple(Mount(m.type, m.source, m.target, ("bind", "ro")) if m.target in NODE_FILES and m.options == ("bind",) else m
                 for m in mounts)
