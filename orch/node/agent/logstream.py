"""A container's log as a stream of entries, for both doors: orch.sock's GET
/containers/{id}/logs (JSON lines) and docker.sock's (docker's multiplexed frames).

`entries(node, rec, ...)` yields the json-file log's entries ({"log", "stream", "time"})
chosen by docker's rules (--since, --until, --tail, in that order), then, with `follow`, what
is appended until the container is no longer running and the file is drained. The file may
rotate while it is followed: when its inode changes the old one is read to its end first, then
the new one from the start.
"""

from __future__ import annotations

import json
import os

import trio

from orch.node.runtime import containerlog

# How often a followed log is read again when no record changed meanwhile (the supervisor
# appends to the file; the agent hears of exits, not of writes).
FOLLOW_POLL = 0.1


async def entries(node, rec: dict, *, follow: bool = False, tail: int | None = None, since: float | None = None,
                  until: float | None = None):
    path = node.store.log_path(rec["Id"])
    past = await trio.to_thread.run_sync(containerlog.read_entries, path)
    if until is not None:
        past = [e for e in past if containerlog.parse_rfc3339(e["time"]) <= until]
    for entry in containerlog.select_entries(past, tail=tail, since=since):
        yield entry
    if not follow:
        return
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    try:
        f.seek(0, os.SEEK_END)
        pending = b""
        while True:
            running = rec["Id"] in node.records and rec["State"]["Status"] in ("running", "paused")
            pending += f.read()
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if until is not None and containerlog.parse_rfc3339(entry["time"]) > until:
                    return
                yield entry
            try:
                if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                    f.close()
                    f = open(path, "rb")
                    pending = b""
                    continue
            except FileNotFoundError:
                return
            if not running:
                return
            if until is not None and _now() > until:
                return
            with trio.move_on_after(FOLLOW_POLL):
                await node.changed.wait()
    finally:
        f.close()


def _now() -> float:
    import time

    return time.time()
