"""Durations and byte sizes as stack files write them.

Durations use Go's `time.ParseDuration` grammar, as compose does: a sequence of decimal numbers
with units (`1m30s`, `1.5h`, `500ms`, `10us`). Byte sizes use docker's `RAMInBytes` grammar:
a number, an optional space, and a binary unit (`512m`, `1g`, `1.5GB`, `1024k`, `100b`).
Both raise ValueError with a message that shows the accepted forms; the caller adds the
file, line and key path.
"""

import re

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BYTES = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_BYTE_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_duration(value) -> float:
    """'1m30s' -> 90.0 seconds. A bare number is seconds (compose-go accepts integers too)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}; write it like '10s', '1m30s' or '500ms'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: it must not be negative")
        return float(value)
    text = str(value).strip()
    if text in ("0", "+0"):
        return 0.0
    pos, total = 0, 0.0
    body = text[1:] if text[:1] == "+" else text
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r}; write it like '10s', '1m30s' or '500ms'")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError("invalid duration ''; write it like '10s', '1m30s' or '500ms'")
    return total


def format_duration(seconds: float) -> str:
    """90.0 -> '1m30s', 0.5 -> '500ms': Go's `Duration.String`, which `compose config` prints."""
    return format_nanos(round(seconds * 1e9))


def format_nanos(nanos: int) -> str:
    """Go's `Duration.String` of a count of nanoseconds (docker's JSON durations)."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(nanos / size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _trim(number: float) -> str:
    text = f"{number:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_bytes(value) -> int:
    """'512m' -> 536870912. A bare number is bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}; write it like '512m', '1g' or '1024k'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: it must not be negative")
        return int(value)
    match = _BYTES.match(str(value).strip())
    if not match:
        raise ValueError(f"invalid size {value!r}; write it like '512m', '1g', '1024k' or '100b'")
    unit = match.group(2).lower() if match.group(2) else None
    return int(float(match.group(1)) * _BYTE_UNITS[unit])
