"""`run`/`create` flags for what the agent supervises: --restart, --health-*, --stop-*.

Kept apart from runflags.py so the run hot path only pays for them when they are used (the
parser gains a few arguments; the parsing below runs only for flags that were given).
"""

import re

from orch.errors import InvalidArgument

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def add_flags(p) -> None:
    p.add_argument("--restart", help="no, always, on-failure[:N] or unless-stopped")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=int)
    p.add_argument("--health-cmd")
    p.add_argument("--health-interval")
    p.add_argument("--health-timeout")
    p.add_argument("--health-retries", type=int)
    p.add_argument("--health-start-period")
    p.add_argument("--health-start-interval")
    p.add_argument("--no-healthcheck", action="store_true")


def parse_duration(text: str, flag: str) -> float:
    """docker's Go durations ("1m30s", "500ms"); a bare number is seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"invalid {flag} {text!r}: write a duration such as 30s, 1m30s or 500ms")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_restart(text: str) -> dict:
    name, _, count = text.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped") or (count and (name != "on-failure" or not count.isdigit())):
        raise InvalidArgument(f"invalid --restart {text!r}: use no, always, unless-stopped or on-failure[:N]")
    return {"name": name, "maximum_retry_count": int(count or 0)}


def apply_flags(a, body: dict) -> None:
    if a.restart:
        body["restart_policy"] = parse_restart(a.restart)
    if a.stop_signal:
        body["stop_signal"] = a.stop_signal
    if a.stop_timeout is not None:
        body["stop_timeout"] = a.stop_timeout
    if a.no_healthcheck:
        if a.health_cmd:
            raise InvalidArgument("--no-healthcheck conflicts with --health-cmd; give one of them")
        body["healthcheck"] = {"test": ["NONE"]}
        return
    check = {}
    for flag in ("interval", "timeout", "start_period", "start_interval"):
        value = getattr(a, f"health_{flag}")
        if value:
            check[flag] = parse_duration(value, f"--health-{flag.replace('_', '-')}")
    if a.health_retries is not None:
        check["retries"] = a.health_retries
    if a.health_cmd:
        check["test"] = ["CMD-SHELL", a.health_cmd]
    if check:
        if "test" not in check:
            raise InvalidArgument("--health-* options need --health-cmd (this orch does not merge them into the image's check yet)")
        body["healthcheck"] = check
