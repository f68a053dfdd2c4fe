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
