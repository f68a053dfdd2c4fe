"""`run`/`create` flags for networks, ports and mounts, with docker's grammar.

This module only splits the flags into the create request's fields; the agent checks them
(agent/netspec.py, agent/mountspec.py), so every client gets the same one-line errors. Lean:
standard library only, since `orch run` is the hot path.
"""

from __future__ import annotations

import argparse

from orch.errors import InvalidArgument


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--network-alias", "--net-alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("--volumes-from", action="append", default=[])


def body_fields(a) -> dict:
    body: dict = {}
    if a.publish:
        body["ports"] = [parse_port(spec) for spec in a.publish]
    if a.publish_all:
        body["publish_all"] = True
    if a.network_alias or a.ip:
        mode = getattr(a, "network", None) or "bridge"
        body["networks"] = [{"name": mode, "aliases": a.network_alias, "ipv4_address": a.ip}]
    for key in ("dns", "dns_search", "volumes_from"):
        if getattr(a, key):
            body[key] = getattr(a, key)
    if a.add_host:
        body["extra_hosts"] = [h.replace("=", ":", 1) if "=" in h and ":" not in h else h for h in a.add_host]
    mounts = [parse_volume(v) for v in a.volume] + [parse_mount(m) for m in a.mount] + [parse_tmpfs(t) for t in a.tmpfs]
    if mounts:
        body["mounts"] = mounts
    return body


def parse_port(spec: str) -> dict:
    """-p [IP:][HOST:]CONTAINER[/PROTO] into the request's fields (the agent checks the numbers)."""
    body, _, proto = spec.partition("/")
    parts = body.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise InvalidArgument(f"invalid published port {spec!r}: use [IP:][HOST:]CONTAINER[/PROTO], e.g. 8080:80")
    ip, host = (parts[0], parts[1]) if len(parts) == 3 else ("", parts[0] if len(parts) == 2 else "")
    return {"host_ip": ip, "host_port": host, "container_port": parts[-1], "protocol": proto or "tcp"}


def parse_volume(spec: str) -> dict:
    """-v /host:/ctr[:opts] (bind), -v name:/ctr[:opts] (named volume), -v /ctr (anonymous)."""
    parts = spec.split(":")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification {spec!r}: use SOURCE:TARGET[:ro|rw|nocopy]")
    if not all(parts):
        # docker: "invalid spec: :/x: empty section between colons"
        raise InvalidArgument(f"invalid volume specification {spec!r}: empty section between colons; use SOURCE:TARGET[:ro|rw|nocopy]")
    if len(parts) == 1:
        return {"type": "volume", "source": "", "target": parts[0]}
    source, target = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    unknown = [o for o in opts if o not in ("ro", "rw", "nocopy", "z", "Z", "rprivate", "private")]
    if unknown:
        raise InvalidArgument(f"invalid volume option {unknown[0]!r} in {spec!r}: use ro, rw or nocopy")
    return {"type": "bind" if source.startswith("/") else "volume", "source": source, "target": target,
            "read_only": "ro" in opts, "nocopy": "nocopy" in opts}


def parse_mount(spec: str) -> dict:
    """--mount type=bind|volume|tmpfs,source=,target=,readonly,volume-nocopy,tmpfs-size="""
    from orch.api.runflags import parse_bytes

    out: dict = {"type": "volume"}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key == "type":
            out["type"] = value
        elif key in ("source", "src"):
            out["source"] = value
        elif key in ("target", "destination", "dst"):
            out["target"] = value
        elif key in ("readonly", "ro"):
            out["read_only"] = not sep or value.lower() in ("1", "true")
        elif key == "volume-nocopy":
            out["nocopy"] = not sep or value.lower() in ("1", "true")
        elif key == "tmpfs-size":
            out["tmpfs_size"] = parse_bytes(value, "--mount tmpfs-size")
        elif key in ("bind-propagation", "tmpfs-mode", "consistency"):
            continue  # accepted, as docker's defaults
        else:
            raise InvalidArgument(f"unknown --mount key {key!r} in {spec!r}; use type, source, target, readonly, volume-nocopy, tmpfs-size")
    if "target" not in out:
        raise InvalidArgument(f"--mount {spec!r} has no target; add target=/path/in/container")
    return out


def parse_tmpfs(spec: str) -> dict:
    """--tmpfs /path[:size=64m,...]"""
    from orch.api.runflags import parse_bytes

    target, _, opts = spec.partition(":")
    out: dict = {"type": "tmpfs", "target": target}
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key == "size":
            out["tmpfs_size"] = parse_bytes(value, "--tmpfs size")
        elif key == "ro":
            out["read_only"] = True
    return out
