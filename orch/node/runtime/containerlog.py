"""Container logs in docker's json-file format, bounded by rotation.

Each line a container writes becomes one JSON object on its own line:
`{"log": "hello\\n", "stream": "stdout", "time": "2026-11-29T20:07:45.123456789Z"}`, as docker's
json-file driver writes them (daemon/logger/jsonfilelog), so tools that read docker logs read
ours. A line longer than 16 KiB is split into several entries, as docker does, and a partial
line is written when the stream closes.

Bounded: when the file would pass `max_size` bytes it is renamed to container.log.1 (older
ones shift up) and a new one is started; at most `max_file` files exist. The supervisor is the
only writer; the agent reads (`read_entries`) for `orch logs`.
"""

import json
import os
import time

CHUNK = 16 * 1024


def rfc3339_nano(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch from our own RFC3339Nano stamps (UTC, 'Z')."""
    import calendar

    base, _, frac = text.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs + (int(frac.ljust(9, "0")[:9]) / 1e9 if frac else 0.0)


class LogWriter:
    def __init__(self, path: str, max_size: int = 10 * 1024 * 1024, max_file: int = 3):
        self.path, self.max_size, self.max_file = path, max(int(max_size), 1024), max(int(max_file), 1)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size
        self.partial: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial.pop(stream, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        out = []
        for line in lines:
            line += b"\n"
            for i in range(0, len(line), CHUNK):
                out.append(_entry(line[i : i + CHUNK], stream))
        while len(rest) >= CHUNK:
            out.append(_entry(rest[:CHUNK], stream))
            rest = rest[CHUNK:]
        if rest:
            self.partial[stream] = rest
        for entry in out:
            self._append(entry)

    def close(self) -> None:
        for stream, rest in self.partial.items():
            self._append(_entry(rest, stream))
        self.partial = {}
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _append(self, entry: bytes) -> None:
        if self.size and self.size + len(entry) > self.max_size:
            self._rotate()
        os.write(self.fd, entry)
        self.size += len(entry)

    def _rotate(self) -> None:
        os.close(self.fd)
        for i in range(self.max_file - 1, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i}")
        if self.max_file == 1:
            os.unlink(self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.size = 0


def _entry(data: bytes, stream: str) -> bytes:
    text = data.decode("utf-8", errors="replace")
    return (json.dumps({"log": text, "stream": stream, "time": rfc3339_nano()}, ensure_ascii=False) + "\n").encode()


def log_files(path: str, max_file: int = 16) -> list[str]:
    """The log's files, oldest first."""
    files = [f"{path}.{i}" for i in range(max_file, 0, -1) if os.path.exists(f"{path}.{i}")]
    if os.path.exists(path):
        files.append(path)
    return files


def read_entries(path: str) -> list[dict]:
    entries = []
    for name in log_files(path):
        with open(name, "rb") as f:
            for raw in f:
                try:
                    entries.append(json.loads(raw))
                except ValueError:
                    continue  # a line cut by a crash mid-write
    return entries


def select_entries(entries: list[dict], *, tail: int | None = None, since: float | None = None) -> list[dict]:
    """docker logs --since (seconds since the epoch) and --tail N, applied in that order."""
    if since is not None:
        entries = [e for e in entries if parse_rfc3339(e["time"]) >= since]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries

