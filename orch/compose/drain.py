"""Drain a replica before `up` stops it: the agent unnames it in DNS and watches its
connections until the drain rule lets it go (POST /containers/{id}/drain?wait=1, in
orch.node.agent.routes_drain; the rule is orch.scheduler.drain). This module only reads the
agent's stream and says what happens, in compose's words:

     ⠿ Waiting for 2 connections to web-app-1 to end
     ! Container web-app-1  Stopping with 1 connection open: its stop_grace_period (10s) is over

No line when nobody was connected: the replica then waits only the short quiet period.
"""

from __future__ import annotations

import json

from orch.errors import NotFound


def drain_replica(client, target: str, name: str, report) -> dict:
    """Unname `target` in DNS and wait until the node lets it stop; its last event."""
    last: dict = {}
    said_waiting = False
    buf = b""
    try:
        for chunk in client.stream("POST", f"/containers/{target}/drain?wait=1"):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                status = event.get("Status")
                if status == "waiting" and event.get("Open") and not said_waiting:
                    said_waiting = True  # one line per replica, with the count it first saw
                    n = event["Open"]
                    report.once(f" ⠿ Waiting for {n} connection{'' if n == 1 else 's'} to {name} to end")
                elif status == "blind":
                    report.once(f"WARN[0000] {event.get('Message')}; stopping it after a short quiet period")
                elif status == "drained":
                    last = event
                    if event.get("Reason") == "grace" and event.get("Open"):
                        n = event["Open"]
                        report.once(f" ! Container {name:<28} Stopping with {n} connection{'' if n == 1 else 's'} open: "
                                    f"its stop_grace_period ({event.get('Waited', 0):g}s) is over")
    except NotFound:
        pass  # gone already
    return last
