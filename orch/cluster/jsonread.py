"""Reading and writing the Docker Engine API's JSON: Go's units, and one strict reader.

Units, as Go's encoding/json writes them for moby's types:
- times are RFC 3339 strings with up to nine fraction digits (`time.Time`, trailing zeros
  trimmed, 0001-01-01T00:00:00Z for the zero time); orch's records hold float seconds since
  the epoch, and 0 is the zero time;
- durations are integer nanoseconds (`time.Duration`); the records hold float seconds.

`Reader` reads one JSON object field by field and refuses, in one line that names the path
(`ServiceSpec.TaskTemplate.ContainerSpec.Groups: ...`), a value of the wrong type, a field it
was not asked for (`done()`), and a field orch does not support unless it holds Go's zero
value (`unsupported()`), which is how docker's CLI sends many fields it did not set.

Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from pydantic import ValidationError

from orch.cluster import records as r
from orch.errors import InvalidArgument

# ---------------------------------------------------------------------------------------------
# Units


_ZERO_TIME = "0001-01-01T00:00:00Z"
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d{1,9})?(Z|z|[+-]\d\d:\d\d)$")


def format_time(seconds: float | None) -> str:
    """Float seconds since the epoch as Go marshals a time.Time: RFC 3339, nanoseconds with
    trailing zeros trimmed, UTC. 0 (and None) is Go's zero time."""
    if not seconds:
        return _ZERO_TIME
    # The shortest decimal that reads back as the same float (repr's), cut at nanoseconds: a
    # time.time() value prints as Go would print it, not with the float's binary noise.
    exact = Decimal(repr(float(seconds))).quantize(Decimal("1e-9"))
    whole = int(exact // 1)
    nanos = int((exact - whole) * 1_000_000_000)
    text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def parse_time(text: str, where: str) -> float:
    """An RFC 3339 time as float seconds since the epoch; Go's zero time is 0."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where}: expected an RFC 3339 time such as 2016-06-07T21:07:31.171892745Z, got {text!r}")
    if text == _ZERO_TIME:
        return 0.0
    m = _TIME.match(text)
    if m is None:
        raise InvalidArgument(f"{where}: {text!r} is not an RFC 3339 time such as 2016-06-07T21:07:31.171892745Z")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = timezone.utc
        if zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as err:
        raise InvalidArgument(f"{where}: {text!r} is not a valid time ({err})") from None
    return float(Decimal(int(dt.timestamp())) + Decimal(fraction or "0"))


def to_ns(seconds: float | None) -> int:
    """Float seconds as a Go time.Duration (integer nanoseconds)."""
    return int(round((seconds or 0) * 1_000_000_000))


def from_ns(nanoseconds: int) -> float:
    return nanoseconds / 1_000_000_000


# ---------------------------------------------------------------------------------------------
# The reader


def is_zero(value: Any) -> bool:
    """Go's zero value, as docker's CLI sends a field it did not set: null, false, 0, "", an
    empty list, or an object of zero values."""
    if value is None or value is False or value == 0 or value == "" or value == []:
        return True
    if isinstance(value, dict):
        return all(is_zero(v) for v in value.values())
    return False


class Reader:
    """One JSON object being read: take its fields, then `done()` refuses whatever is left."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path}: expected a JSON object, got {_kind(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def str(self, key: str, default: str = "") -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise InvalidArgument(f"{self.at(key)}: expected a string, got {_kind(value)}")
        return value

    def int(self, key: str, default: int | None = 0, *, minimum: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise InvalidArgument(f"{self.at(key)}: expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise InvalidArgument(f"{self.at(key)}: must be {minimum} or more, not {int(value)}")
        return int(value)

    def float(self, key: str, default: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(f"{self.at(key)}: expected a number, got {_kind(value)}")
        return float(value)

    def bool(self, key: str, default: bool | None = False) -> bool | None:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidArgument(f"{self.at(key)}: expected true or false, got {_kind(value)}")
        return value

    def duration(self, key: str, default: float | None = None) -> float | None:
        """A Go duration in nanoseconds as float seconds; negative is refused."""
        ns = self.int(key, None, minimum=0)
        return default if ns is None else from_ns(ns)

    def strings(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{self.at(key)}: expected a list of strings, got {_kind(value)}")
        return list(value)

    def labels(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidArgument(f"{self.at(key)}: expected an object of strings, got {_kind(value)}")
        return dict(value)

    def obj(self, key: str) -> Reader | None:
        value = self.raw(key)
        return None if value is None else Reader(value, self.at(key))

    def objs(self, key: str) -> list[Reader]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidArgument(f"{self.at(key)}: expected a list, got {_kind(value)}")
        return [Reader(v, f"{self.at(key)}[{i}]") for i, v in enumerate(value)]

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.str(key, default) or default
        if value not in choices:
            raise InvalidArgument(f"{self.at(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def unsupported(self, *keys: str, why: str = "") -> None:
        """Fields orch does not support: accepted only with their zero value (docker's CLI
        sends some of them always)."""
        for key in keys:
            value = self.raw(key)
            if not is_zero(value):
                raise InvalidArgument(f"{self.at(key)}: orch does not support this field{why}; remove it")

    def done(self) -> None:
        extra = [k for k in self.data if k not in self.seen]
        if extra:
            raise InvalidArgument(f"{self.at(sorted(extra)[0])}: unknown field; check its spelling against the Docker "
                                  f"Engine API (names are case-sensitive)")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__)


def build(where: str, make: Callable[[], Any]):
    """Build a record value; a value the record refuses is one line naming `where`."""
    try:
        return make()
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidArgument(f"{where}{'.' + loc if loc else ''}: {first['msg']}") from None


def _version(reader: Reader) -> None:
    """`Version` of an object a client sends back: read and ignored (the version that counts
    is the `version` query parameter)."""
    version = reader.obj("Version")
    if version is not None:
        version.int("Index", minimum=0)
        version.done()


def read_meta(reader: Reader) -> dict:
    _version(reader)
    out = {"id": reader.str("ID")}
    for key, name in (("CreatedAt", "created_at"), ("UpdatedAt", "updated_at")):
        if reader.has(key):
            out[name] = parse_time(reader.raw(key), reader.at(key))
        else:
            reader.raw(key)
    return out


def meta_json(record: r.Record, index: int) -> dict:
    return {"ID": record.id, "Version": {"Index": index}, "CreatedAt": format_time(record.created_at),
            "UpdatedAt": format_time(record.updated_at)}


def drop_empty(d: dict) -> dict:
    """Go's `omitempty`: leave out "", 0, false, null, empty lists and objects."""
    return {k: v for k, v in d.items() if v is True or v not in (None, "", 0, False, [], {})}
