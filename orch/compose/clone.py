"""A create body that copies an existing container's configuration: the rollback of a failed
update (update_config.failure_action: rollback) puts back replicas as the old ones were, and
the stack file only has the new configuration, so the old one is read from a container that
still has it (the reconciler's `clone_from`).

Pure: from the container's inspect record (docker's shape) to the agent's create body. What a
record does not keep (the image's own defaults, merged at create) comes back from the image.
"""

from __future__ import annotations

from orch.compose import translate as t

NS = 1_000_000_000


def clone_body(record: dict, *, name: str, number: int) -> dict:
    config, host = record.get("Config") or {}, record.get("HostConfig") or {}
    labels = dict(config.get("Labels") or {})
    labels[t.NUMBER] = str(number)
    body = {
        "image": record["Image"],
        "name": name,
        "env": list(config.get("Env") or []),
        "labels": labels,
        "tty": bool(config.get("Tty")),
        "open_stdin": bool(config.get("OpenStdin")),
        "init": bool(host.get("Init")),
        "restart_policy": _restart_policy(host.get("RestartPolicy") or {}),
    }
    if config.get("Cmd") is not None:
        body["cmd"] = list(config["Cmd"])
    if config.get("Entrypoint") is not None:
        body["entrypoint"] = list(config["Entrypoint"])
    if config.get("WorkingDir"):
        body["workdir"] = config["WorkingDir"]
    if config.get("User"):
        body["user"] = config["User"]
    if config.get("StopSignal"):
        body["stop_signal"] = config["StopSignal"]
    if config.get("StopTimeout") is not None:
        body["stop_timeout"] = config["StopTimeout"]
    check = config.get("Healthcheck")
    if check:
        body["healthcheck"] = {"test": list(check["Test"])}
        for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"), ("StartInterval", "start_interval")):
            if check.get(key):
                body["healthcheck"][field] = check[key] / NS
        if check.get("Retries"):
            body["healthcheck"]["retries"] = check["Retries"]
    service = labels.get(t.SERVICE, "")
    mode = host.get("NetworkMode") or "none"
    networks = (record.get("NetworkSettings") or {}).get("Networks") or {}
    body["network_mode"] = mode
    if mode not in ("none", "host") and not mode.startswith("container:"):
        ordered = sorted(networks, key=lambda n: n != mode)
        body["networks"] = [{"name": n, "aliases": [service, name] if service else [name], "ipv4_address": None} for n in ordered]
    ports = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        port, _, proto = key.partition("/")
        for b in bindings or ():
            ports.append({"host_ip": b.get("HostIp", ""), "host_port": b.get("HostPort", ""), "container_port": port, "protocol": proto or "tcp"})
    if ports:
        body["ports"] = ports
    mounts = []
    for m in record.get("Mounts") or ():
        kind = (m.get("Type") or "volume").lower()
        source = m.get("Name") or "" if kind == "volume" else m.get("Source") or ""
        mounts.append({"type": kind, "source": source, "target": m["Destination"], "read_only": not m.get("RW", True)})
    if mounts:
        body["mounts"] = mounts
    body.update(_security(host))
    return body


def _security(host: dict) -> dict:
    """Capabilities, read-only root, sysctls and ulimits, from docker's HostConfig names."""
    out: dict = {}
    for key, field in (("CapAdd", "cap_add"), ("CapDrop", "cap_drop")):
        if host.get(key):
            out[field] = list(host[key])
    if host.get("ReadonlyRootfs"):
        out["read_only"] = True
    if host.get("Sysctls"):
        out["sysctls"] = dict(host["Sysctls"])
    if host.get("Ulimits"):
        out["ulimits"] = [{"name": u["Name"], "soft": u["Soft"], "hard": u["Hard"]} for u in host["Ulimits"]]
    return out


def _restart_policy(policy: dict) -> dict:
    body = {"name": policy.get("Name") or "no", "maximum_retry_count": policy.get("MaximumRetryCount") or 0}
    if policy.get("MaxAttempts"):
        body["max_attempts"] = policy["MaxAttempts"]
    for key, field in (("Delay", "delay"), ("Window", "window")):
        if policy.get(key) is not None:
            body[field] = policy[key] / NS
    return body
