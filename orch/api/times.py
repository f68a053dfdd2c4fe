"""docker's times as the API writes them: RFC 3339 stamps, the zero time, and go-units'
HumanDuration ("Up 3 seconds", "5 minutes ago"), which docker computes on the server side
(ps's Status column), and the CLI uses for its own tables."""

import calendar
import time

ZERO_TIME = "0001-01-01T00:00:00Z"  # docker's "never"


def parse_time(text: str) -> float | None:
    """Seconds since the epoch from an RFC 3339 UTC stamp ("...Z", up to nanoseconds); None
    for docker's zero time or an empty one."""
    if not text or text.startswith("0001-"):
        return None
    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs + (int(frac.ljust(9, "0")[:9]) / 1e9 if frac else 0.0)


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: "Less than a second", "About a minute", "3 weeks" ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


# -- the CLI's --since/--until (docker's api/types/time.GetTimestamp) ----------------------------
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float | None:
    """Go's time.ParseDuration in seconds ("1h30m", "-5s", "300ms", "1.5h"), or None."""
    import re

    if not text:
        return None
    sign = -1.0 if text[0] == "-" else 1.0
    body = text[1:] if text[0] in "+-" else text
    if body == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", body)
    if not parts or "".join(n + u for n, u in parts) != body:
        return None
    return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def docker_timestamp(value: str, now: float) -> str:
    """What docker's CLI sends for --since/--until: "SECONDS" or "SECONDS.NANOS". A duration
    counts back from `now` ("10m"); RFC 3339 times and dates without a zone are local time;
    a number is sent as it is (seconds since the epoch)."""
    import datetime as dt
    import re

    duration = go_duration(value)
    if value != "0" and duration is not None:
        return str(int(now - duration) if now - duration >= 0 else -int(-(now - duration)))
    local = not (any(c in value for c in "zZ+") or value.count("-") == 3)
    text = value.replace("z", "Z")
    formats = ["%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"]
    parsed = None
    if "-" in value:
        candidate = text
        zone = None
        m = re.search(r"(Z|[+-]\d\d:\d\d)$", candidate) if not local else None
        if m:
            zone = m.group(1)
            candidate = candidate[: m.start()]
        frac = ""
        if "." in candidate:
            candidate, frac = candidate.split(".", 1)
            if not frac.isdigit():
                raise ValueError(f"cannot parse {value!r} as a time")
        for fmt in formats[1:]:
            try:
                parsed = dt.datetime.strptime(candidate, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            raise ValueError(f"cannot parse {value!r} as a time or a duration")
        if zone is None and local:
            tz = dt.datetime.now().astimezone().tzinfo
        elif zone in (None, "Z"):
            tz = dt.timezone.utc
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            tz = dt.timezone((1 if zone[0] == "+" else -1) * dt.timedelta(hours=hours, minutes=minutes))
        seconds = int(parsed.replace(tzinfo=tz).timestamp())
        nanos = int(frac.ljust(9, "0")[:9]) if frac else 0
        return f"{seconds}.{nanos:09d}"
    if re.fullmatch(r"-?\d+(\.\d{1,9})?", value):
        return value  # seconds since the epoch, sent as typed
    raise ValueError(f"failed to parse value as time or duration: {value!r}")


def rfc3339_nano_fixed(ns: int) -> str:
    """docker's jsonmessage.RFC3339NanoFixed of a time in nanoseconds, in local time:
    2006-01-02T15:04:05.000000000Z07:00 (nine digits always)."""
    local = time.localtime(ns // 1_000_000_000)
    offset = local.tm_gmtoff
    zone = "Z" if offset == 0 else f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{ns % 1_000_000_000:09d}" + zone
