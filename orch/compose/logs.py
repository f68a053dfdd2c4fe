"""Log lines of a stack's containers, prefixed by container and coloured per service, as
docker compose prints them ("redis-1  | Ready to accept connections").

One thread per container reads the agent's JSON-lines log stream (GET /containers/{id}/logs);
a lock keeps lines whole. Colours only on a terminal (and never with NO_COLOR).
"""

from __future__ import annotations

import json
import os
import sys
import threading

from orch.compose import translate as t

COLOURS = (36, 33, 32, 35, 34, 91, 92, 93, 94, 95, 96)


def prefix_width(names: list[str]) -> int:
    return max((len(n) for n in names), default=0)


def short_name(record: dict, project: str) -> str:
    """compose prints `web-1` for `<project>-web-1`."""
    name = record["Name"].lstrip("/")
    return name[len(project) + 1:] if name.startswith(project + "-") else name


class LogPrinter:
    def __init__(self, client, project: str, records: list[dict], *, out=None, timestamps: bool = False, colour: bool | None = None):
        self.client, self.project, self.records = client, project, records
        self.out = out or sys.stdout
        self.timestamps = timestamps
        if colour is None:
            colour = self.out.isatty() and not os.environ.get("NO_COLOR")
        services = sorted({(r["Config"].get("Labels") or {}).get(t.SERVICE, "") for r in records})
        self.colour = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(services)} if colour else {}
        self.width = prefix_width([short_name(r, project) for r in records])
        self.lock = threading.Lock()

    def follow(self, *, follow: bool, tail: int | None = None) -> list[threading.Thread]:
        threads = []
        for r in self.records:
            th = threading.Thread(target=self._one, args=(r, follow, tail), daemon=True)
            th.start()
            threads.append(th)
        return threads

    def _one(self, record: dict, follow: bool, tail: int | None) -> None:
        query = "follow=1" if follow else "follow=0"
        if tail is not None:
            query += f"&tail={tail}"
        name = short_name(record, self.project)
        service = (record["Config"].get("Labels") or {}).get(t.SERVICE, "")
        prefix = f"{name:<{self.width}}  | "
        if service in self.colour:
            prefix = f"\x1b[{self.colour[service]}m{prefix}\x1b[0m"
        buf = b""
        try:
            for chunk in self.client.stream("GET", f"/containers/{record['Id']}/logs?{query}"):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._print(prefix, json.loads(line))
        except Exception:  # noqa: BLE001 - the container went away; its stream ends with it
            return

    def _print(self, prefix: str, entry: dict) -> None:
        text = entry.get("log", "").rstrip("\n")
        stamp = entry.get("time", "") + " " if self.timestamps else ""
        with self.lock:
            for line in text.split("\n"):
                print(f"{prefix}{stamp}{line}", file=self.out, flush=True)
