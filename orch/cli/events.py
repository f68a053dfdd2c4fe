"""`orch events`: the node's events as docker prints them, streamed from GET /events.

    orch events [--since T] [--until T] [-f KEY=VALUE]... [--format FMT]

Without --until the stream goes on until Ctrl-C. A line is docker's: the time (local, nine
digits of fraction), type, action, actor id, and the attributes sorted by key; `--format`
takes a template over docker's message (`{{.Type}} {{.Actor.Attributes.name}}`) or `json`.
"""

import json
import sys
import time

from orch.api.args import Parser
from orch.api.times import docker_timestamp, rfc3339_nano_fixed
from orch.errors import InvalidArgument, Unavailable


def parse_filter_flags(values: list[str]) -> dict[str, list[str]]:
    """docker's repeated `-f key=value`, as the filters JSON object the API takes."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def query(since: str | None, until: str | None, filters: dict) -> str:
    from orch.client import quoted

    now = time.time()
    parts = []
    for name, value in (("since", since), ("until", until)):
        if value:
            try:
                parts.append(f"{name}={docker_timestamp(value, now)}")
            except ValueError as err:
                raise InvalidArgument(f"--{name} {value!r}: {err}; give a duration (10m), a time (2024-01-02T15:04:05) "
                                      "or seconds since the epoch") from None
    if filters:
        parts.append("filters=" + quoted(json.dumps(filters, separators=(",", ":"))))
    return "?" + "&".join(parts) if parts else ""


def pretty(msg: dict) -> str:
    """docker's prettyPrintEvent."""
    out = ""
    if msg.get("timeNano"):
        out = rfc3339_nano_fixed(msg["timeNano"]) + " "
    elif msg.get("time"):
        out = rfc3339_nano_fixed(msg["time"] * 1_000_000_000) + " "
    actor = msg.get("Actor") or {}
    out += f"{msg.get('Type', '')} {msg.get('Action', '')} {actor.get('ID', '')}"
    attrs = actor.get("Attributes") or {}
    if attrs:
        out += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return out


def stream_events(client, path: str):
    """Yield each event (a dict) of a GET /events stream."""
    buf = b""
    for chunk in client.stream("GET", path):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def main(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Get real time events from the node")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output (e.g. type=container, event=die)")
    p.add_argument("--format", help="format the output with a Go template, or 'json'")
    p.add_argument("--since", help="show events created since this time")
    p.add_argument("--until", help="stream events until this time")
    a = p.parse_args(argv)
    from orch.cli._agent import client

    path = "/events" + query(a.since, a.until, parse_filter_flags(a.filter))
    render = None
    if a.format and a.format != "json":
        from orch.cli.format import render as render_template, unescape

        template = unescape(a.format)
        render = lambda msg: render_template(template, msg)  # noqa: E731
    out = sys.stdout
    for msg in stream_events(client(), path):
        if a.format == "json":
            from orch.cli.format import to_json

            line = to_json(msg)
        elif render is not None:
            line = render(msg)
        else:
            line = pretty(msg)
        out.write(line + "\n")
        out.flush()
    if not a.until:
        raise Unavailable("the agent ended the event stream (it stopped, or this reader fell too far behind)")
    return 0
