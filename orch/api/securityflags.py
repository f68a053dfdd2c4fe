"""`run`/`create` flags for privileges and limits, with docker's grammar: --cap-add, --cap-drop,
--read-only, --sysctl, --ulimit, --security-opt (seccomp=unconfined|FILE, no-new-privileges;
label= and apparmor= refused in one line) and --privileged, refused in one line.

Kept apart from runflags.py so the run hot path pays only for an argparse entry per flag:
the rules (orch.node.runtime.security) are imported only when one of these flags is given.
The agent checks the same fields again with the same rules, for every other client.
"""

import argparse

from orch.errors import InvalidArgument


def add_flags(p) -> None:
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a Linux capability (NET_ADMIN, ALL, ...)")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a Linux capability")
    p.add_argument("--read-only", action="store_true", help="mount the container's root file system read-only")
    p.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE", help="set a namespaced kernel parameter")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="set a resource limit (nofile=1024:2048)")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false]")
    p.add_argument("--privileged", action="store_true", help=argparse.SUPPRESS)


def apply_flags(a, body: dict, cwd: str | None = None) -> None:
    """The flags into the create body; a seccomp profile file is read here, relative to the
    client's `cwd`, and sent inline, as the docker CLI does."""
    if a.privileged:
        raise InvalidArgument("--privileged is not supported by orch (it would hand the container the host's devices and every "
                              "capability); grant only what the program needs with --cap-add")
    if a.read_only:
        body["read_only"] = True
    if not (a.cap_add or a.cap_drop or a.sysctl or a.ulimit or a.security_opt):
        return
    from orch.node.runtime import security

    if a.security_opt:
        options = security.parse_security_opts(a.security_opt, read_file=lambda path: security.read_profile_file(path, cwd))
        body["security_opt"] = options.to_opts()

    add, drop = security.compute_cap_add_drop(a.cap_add, a.cap_drop)
    if add:
        body["cap_add"] = list(add)
    if drop:
        body["cap_drop"] = list(drop)
    if a.sysctl:
        body["sysctls"] = dict(security.parse_sysctl(text) for text in a.sysctl)
    if a.ulimit:
        # A later --ulimit for the same name wins, as docker's map has it.
        limits = {}
        for text in a.ulimit:
            name, soft, hard = security.parse_ulimit(text)
            limits[name] = {"name": name, "soft": soft, "hard": hard}
        body["ulimits"] = list(limits.values())
