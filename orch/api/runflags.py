"""`run` and `create`: docker's flags, and the create request (orch.api.models.CreateRequest)
they make.

Both sides use this module: `orch create` in the CLI, and the agent for `orch run`, whose
client (orch/cli/fastrun.py) sends its argv unparsed so that it can stay free of argparse
(orch/node/agent/runsock.py). Standard library only (argparse, and re for durations), since
`orch run`'s start-up is the figure people time; the flags of rarer areas (networks and mounts,
privileges, supervision) live in their own modules and cost an argparse entry each.

What the client alone knows goes in here: its environment (`-e NAME`) and working directory
(a relative `--env-file`). The agent checks the request's values again, for every client.
"""

import argparse
import os

from orch.api.args import Parser
from orch.errors import InvalidArgument

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
MAX_BYTES = 2**63 - 1  # docker's sizes are int64


def parse_bytes(text: str, flag: str) -> int:
    """docker's RAMInBytes: 512m, 1g, 1.5G, 1024 (bytes), 100kb."""
    t = text.strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgtp":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in "bkmgtp" else ""
    number = t[: len(t) - len(unit)]
    try:
        value = int(number) if number.isdigit() else float(number)  # exact for whole numbers
    except ValueError:
        raise InvalidArgument(f"invalid size {text!r} for {flag}; use a number with an optional unit b, k, m, g (e.g. 512m)") from None
    if value < 0:
        raise InvalidArgument(f"invalid size {text!r} for {flag}: it must not be negative")
    if value != value or value * UNITS[unit] > MAX_BYTES:  # nan, inf, or past int64
        raise InvalidArgument(f"invalid size {text!r} for {flag}: it is more than 2^63-1 bytes")
    return int(value * UNITS[unit])


def parse_env(values: list[str], files: list[str], *, environ=None, cwd: str | None = None) -> list[str]:
    """-e K=V, -e K (taken from the client's environment `environ`; dropped if unset), and
    --env-file lines (a relative path is relative to the client's `cwd`)."""
    environ = os.environ if environ is None else environ
    env = []
    for path in files:
        try:
            lines = open(os.path.join(cwd, path) if cwd else path).read().splitlines()
        except OSError as err:
            raise InvalidArgument(f"cannot read env file {path}: {err.strerror}") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.split("=", 1)[0].strip() != line.split("=", 1)[0] or " " in line.split("=", 1)[0]:
                raise InvalidArgument(f"{path}:{n}: variable name {line.split('=', 1)[0]!r} contains whitespace")
            env.append(line if "=" in line else _from_environ(line, environ))
    for v in values:
        env.append(v if "=" in v else _from_environ(v, environ))
    return [e for e in env if e is not None]


def _from_environ(name: str, environ):
    return f"{name}={environ[name]}" if name in environ else None


def add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-h", "--hostname")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--cpus", type=float)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--network", "--net", dest="network")
    p.add_argument("--init", action="store_true")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--log-opt", action="append", default=[])
    # Namespaces shared with the host (docker's PidMode, IpcMode, UsernsMode) and devices.
    p.add_argument("--pid", help="host: share the host's process namespace")
    p.add_argument("--ipc", help="private, shareable or host")
    p.add_argument("--userns", help="host (orch keeps no user namespace remapping)")
    p.add_argument("--device", action="append", default=[], help=argparse.SUPPRESS)
    from orch.api.supervisionflags import add_flags

    add_flags(p)
    p.add_argument("--help", action="help")
    from orch.api.netflags import add_flags

    add_flags(p)  # networks, ports, mounts
    from orch.api.securityflags import add_flags

    add_flags(p)  # capabilities, read-only root, sysctls, ulimits
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def create_body(a, environ=None, cwd: str | None = None) -> dict:
    """The create request of parsed flags `a`, for a client with `environ` and `cwd`."""
    body = {"image": a.image, "cmd": a.command or None, "env": parse_env(a.env, a.env_file, environ=environ, cwd=cwd), "tty": a.tty,
            "open_stdin": a.interactive, "auto_remove": a.rm, "init": a.init}
    if a.entrypoint is not None:
        body["entrypoint"] = [a.entrypoint] if a.entrypoint else []
    for key in ("name", "hostname", "workdir", "user", "network"):
        if getattr(a, key):
            body[key] = getattr(a, key)
    if a.memory:
        body["memory"] = parse_bytes(a.memory, "--memory")
        if body["memory"] < 6 * 1024 * 1024:
            raise InvalidArgument("minimum memory limit allowed is 6MB (--memory)")
    if a.memory_swap:
        body["memory_swap"] = -1 if a.memory_swap == "-1" else parse_bytes(a.memory_swap, "--memory-swap")
    if a.cpus is not None:
        if not 0 < a.cpus < float("inf"):
            raise InvalidArgument(f"invalid --cpus {a.cpus}: it must be more than 0")
        body["nano_cpus"] = int(a.cpus * 1e9)  # the agent checks it against the node's CPUs
    if a.pids_limit is not None and a.pids_limit > 0:  # docker: 0 or -1 is unlimited
        body["pids_limit"] = a.pids_limit
    if a.label:
        body["labels"] = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in a.label)
    if a.device:
        raise InvalidArgument(f"--device {a.device[0]} is not supported by orch: a device needs a devices cgroup rule and a "
                              "node made in the container's /dev, which orch does not do; bind-mount what the program needs "
                              "from a directory instead")
    for flag, key in (("pid", "pid_mode"), ("ipc", "ipc_mode"), ("userns", "userns_mode")):
        if getattr(a, flag) is not None:
            body[key] = getattr(a, flag)
    from orch.api.netflags import body_fields

    body.update(body_fields(a))
    for opt in a.log_opt:
        key, _, value = opt.partition("=")
        if key == "max-size":
            body["log_max_size"] = parse_bytes(value, "--log-opt max-size")
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument(f"invalid --log-opt max-file={value!r}: give a whole number of files, 1 or more")
            body["log_max_file"] = int(value)
        else:
            raise InvalidArgument(f"unknown log option {key!r}; json-file takes max-size and max-file")
    from orch.api.supervisionflags import apply_flags

    apply_flags(a, body)
    from orch.api.securityflags import apply_flags

    apply_flags(a, body, cwd=cwd)
    return body


def create_parser(prog: str) -> Parser:
    p = Parser(prog=prog, description="Create a new container", add_help=False)
    add_create_flags(p)
    return p


class HelpShown(Exception):
    """`orch run --help` parsed in the agent: the text goes back to the client."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _HelpToClient(Parser):
    def print_help(self, file=None):
        raise HelpShown(self.format_help())


_run_parser = None


def parse_run(argv: list[str], *, environ: dict, cwd: str) -> tuple[argparse.Namespace, dict]:
    """`orch run`'s flags and the create request they make, for a client whose environment and
    working directory are `environ` and `cwd`. Misuse raises InvalidArgument; --help HelpShown."""
    global _run_parser
    if _run_parser is None:  # built once per agent; parse_args leaves a parser as it was
        p = _HelpToClient(prog="orch run", description="Create and run a new container from an image", add_help=False)
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--sig-proxy", default="true")
        add_create_flags(p)
        _run_parser = p
    a = _run_parser.parse_args(argv)
    return a, create_body(a, environ=environ, cwd=cwd)
