"""The one list of stack-file keys that orch acts on.

Everything else in compose-spec.json is accepted and kept, and `Project.unsupported()` lists
where it appears, so a user sees what orch will ignore. When a later change teaches orch a key,
it adds the key here, and the list shrinks.
"""

TOP_KEYS = frozenset({"name", "services", "networks", "volumes", "secrets", "configs", "include"})

SERVICE_KEYS = frozenset(
    {
        "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose",
        "volumes", "networks", "depends_on", "links", "volumes_from", "network_mode", "healthcheck",
        "restart", "deploy", "scale", "hostname", "user", "working_dir", "labels", "stop_signal",
        "stop_grace_period", "init", "read_only", "tmpfs", "cap_add", "cap_drop", "privileged",
        "ulimits", "sysctls", "security_opt", "extra_hosts", "dns", "profiles", "container_name", "pull_policy",
        "tty", "stdin_open", "secrets", "configs", "extends", "develop",
    }
)  # fmt: skip

# Sub-keys, for the service keys orch acts on only in part.
NESTED_KEYS = {
    "build": frozenset({"context", "dockerfile", "args", "target"}),
    "deploy": frozenset({"mode", "replicas", "resources", "restart_policy", "update_config", "rollback_config", "placement"}),
}

NETWORK_KEYS = frozenset({"name", "driver", "ipam", "external", "internal", "labels"})
VOLUME_KEYS = frozenset({"name", "driver", "external", "labels"})
SECRET_KEYS = frozenset({"name", "file", "environment", "external"})
CONFIG_KEYS = frozenset({"name", "file", "content", "environment", "external"})
SECTION_KEYS = {"networks": NETWORK_KEYS, "volumes": VOLUME_KEYS, "secrets": SECRET_KEYS, "configs": CONFIG_KEYS}


def unsupported_paths(stack: dict) -> list[str]:
    """Key paths in a normalized stack (`Project.to_dict()`) that orch does not act on."""
    out: list[str] = []
    for key in stack:
        if key not in TOP_KEYS and not key.startswith("x-"):
            out.append(key)
    for name, service in (stack.get("services") or {}).items():
        for key, value in service.items():
            if key.startswith("x-"):
                continue
            if key not in SERVICE_KEYS:
                out.append(f"services.{name}.{key}")
            elif key in NESTED_KEYS and isinstance(value, dict):
                out.extend(f"services.{name}.{key}.{sub}" for sub in value if sub not in NESTED_KEYS[key] and not sub.startswith("x-"))
    for section, known in SECTION_KEYS.items():
        for name, body in (stack.get(section) or {}).items():
            out.extend(f"{section}.{name}.{key}" for key in (body or {}) if key not in known and not key.startswith("x-"))
    return out
