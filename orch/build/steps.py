"""What the metadata instructions do to an image's config. Pure.

ENV, LABEL, EXPOSE, USER, VOLUME, WORKDIR, CMD, ENTRYPOINT, HEALTHCHECK, STOPSIGNAL, SHELL,
ONBUILD and MAINTAINER change only the image config (the OCI config's "config" object, in
docker's key names); each gets a history entry marked `"empty_layer": true`, as docker marks
them. Arguments arrive expanded (the builder expands variables first, per buildkit's list of
instructions that expand: ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR).

The functions take the inner config dict and return a new one; they never mutate their input.
"""

import copy
import json

from orch.build.dockerfile_checks import parse_duration
from orch.errors import UserError

DEFAULT_SHELL = ["/bin/sh", "-c"]


def shell_of(inner: dict) -> list[str]:
    return list(inner.get("Shell") or DEFAULT_SHELL)


def command_words(args: list[str], is_json: bool, inner: dict) -> list[str]:
    """The argv of RUN/CMD/ENTRYPOINT: the JSON form as is, the shell form through SHELL."""
    if is_json:
        return list(args)
    return shell_of(inner) + [" ".join(args)]


def set_env(inner: dict, pairs: list[tuple[str, str]]) -> dict:
    out = copy.deepcopy(inner)
    env = list(out.get("Env") or [])
    for key, value in pairs:
        env = [e for e in env if e.split("=", 1)[0] != key]
        env.append(f"{key}={value}")
    out["Env"] = env
    return out


def env_dict(inner: dict) -> dict[str, str]:
    out = {}
    for e in inner.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_labels(inner: dict, pairs: list[tuple[str, str]]) -> dict:
    out = copy.deepcopy(inner)
    labels = dict(out.get("Labels") or {})
    labels.update(pairs)
    out["Labels"] = labels
    return out


def add_ports(inner: dict, ports: list[str]) -> dict:
    out = copy.deepcopy(inner)
    exposed = dict(out.get("ExposedPorts") or {})
    for port in ports:
        number, _, proto = port.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise UserError(f"EXPOSE {port}: unknown protocol '{proto}'; use tcp, udp or sctp")
        low, _, high = number.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise UserError(f"EXPOSE {port}: invalid port; use NUMBER[/PROTO] or LOW-HIGH[/PROTO]")
        for n in range(int(low), int(high or low) + 1):
            exposed[f"{n}/{proto}"] = {}
    out["ExposedPorts"] = exposed
    return out


def add_volumes(inner: dict, paths: list[str]) -> dict:
    out = copy.deepcopy(inner)
    volumes = dict(out.get("Volumes") or {})
    for p in paths:
        if not p.strip():
            raise UserError("VOLUME specified can not be an empty string")
        volumes[p] = {}
    out["Volumes"] = volumes
    return out


def join_workdir(current: str, path: str) -> str:
    """WORKDIR is relative to the previous one; the result is clean and absolute."""
    full = path if path.startswith("/") else (current or "/").rstrip("/") + "/" + path
    parts: list[str] = []
    for p in full.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/" + "/".join(parts)


def set_key(inner: dict, key: str, value) -> dict:
    out = copy.deepcopy(inner)
    out[key] = value
    return out


def set_entrypoint(inner: dict, argv: list[str]) -> dict:
    # docker: "If CMD is defined from the base image, setting ENTRYPOINT will reset CMD to an
    # empty value": a Cmd set earlier in this Dockerfile is reset too, and a later CMD wins.
    out = copy.deepcopy(inner)
    out["Entrypoint"] = argv
    out["Cmd"] = None
    return out


def healthcheck(inner: dict, args: list[str], flags: dict, is_json: bool) -> dict:
    """docker's Healthcheck object: Test plus durations in nanoseconds."""
    if args[0].upper() == "NONE":
        return set_key(inner, "Healthcheck", {"Test": ["NONE"]})
    rest = args[1:]
    test = ["CMD", *rest] if is_json else ["CMD-SHELL", " ".join(rest)]
    check: dict = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
        if flag in flags:
            check[key] = int(round(parse_duration(flags[flag], f"--{flag}") * 1e9))
    if "retries" in flags:
        check["Retries"] = int(flags["retries"])
    return set_key(inner, "Healthcheck", check)


def add_onbuild(inner: dict, trigger: str) -> dict:
    out = copy.deepcopy(inner)
    out["OnBuild"] = list(out.get("OnBuild") or []) + [trigger]
    return out


def history_text(keyword: str, text: str) -> str:
    """The history's created_by for an instruction, as buildkit writes it."""
    return f"{keyword} {text}".strip()


def json_args(argv: list[str]) -> str:
    return json.dumps(argv)
