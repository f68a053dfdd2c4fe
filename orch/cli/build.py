"""`orch build`, `orch image history`, `orch commit`, `orch container diff`, with docker's flags
and output.

The agent builds from the context *directory on the node* (this CLI runs on the node it
talks to), so the context and -f paths are made absolute here instead of being sent as a tar
as the docker CLI does. Errors are OrchErrors and print as one line.
"""

import json
import os
import sys
import time
from urllib.parse import quote

from orch.cli.args import Parser
from orch.errors import InvalidArgument, from_kind




def _client():
    from orch.cli._agent import client

    return client()


def _ref(ref: str) -> str:
    return quote(ref, safe="/:@")


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not key:
        raise InvalidArgument(f"{flag} {text!r}: want KEY=VALUE")
    if not eq:
        # docker: `--build-arg NAME` takes the value from the environment, if set.
        if key not in os.environ:
            return key, None
        value = os.environ[key]
    return key, value


def build(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Build an image from a Dockerfile.")
    p.add_argument("-t", "--tag", action="append", default=[], help="name and optionally a tag, NAME[:TAG] (repeatable)")
    p.add_argument("-f", "--file", help="the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], help="set a build-time variable, KEY=VALUE (repeatable)")
    p.add_argument("--target", help="build this stage and the ones it needs")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--label", action="append", default=[], help="set metadata on the image, KEY=VALUE (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--network", choices=("default", "none", "host"), default="default",
                   help="the RUN steps' network: default (the node's bridge, NAT out), none, host")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="network.host: let the Dockerfile's RUN --network=host use the host's network")
    p.add_argument("path", metavar="PATH", help="the build context directory")
    args = p.parse_args(argv)
    if args.path == "-" or "://" in args.path:
        raise InvalidArgument(f"{prog}: the build context must be a directory on this node, not {args.path!r}")
    context = os.path.abspath(args.path)
    if not os.path.isdir(context):
        raise InvalidArgument(f"{prog}: unable to prepare context: path {args.path!r} not found or not a directory")
    from orch.node.runtime.reference import parse as parse_ref

    for tag in args.tag:
        parse_ref(tag)
    build_args = {}
    for text in args.build_arg:
        k, v = _key_value(text, "--build-arg")
        if v is not None:
            build_args[k] = v
    body = {
        "context": context, "dockerfile": os.path.abspath(args.file) if args.file else None, "tags": args.tag,
        "build_args": build_args, "target": args.target, "no_cache": args.no_cache,
        "labels": dict(_key_value(t, "--label") for t in args.label),
        "network": args.network,
    }
    for entitlement in args.allow:
        if entitlement != "network.host":
            raise InvalidArgument(f"{prog}: unknown entitlement {entitlement!r} for --allow; orch knows network.host")
    if args.allow:
        body["allow"] = sorted(set(args.allow))
    image_id = None
    buf = b""
    for chunk in _client().stream("POST", "/build", body):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            msg = json.loads(raw)
            if "error" in msg:
                sys.stdout.flush()
                raise from_kind(msg.get("kind", "error"), msg["error"])
            if "stream" in msg and not args.quiet:
                sys.stdout.write(msg["stream"])
                sys.stdout.flush()
            if "aux" in msg:
                image_id = msg["aux"].get("ID")
    if image_id is None:
        raise from_kind("system", "the build ended without a result; see the agent's log")
    if args.quiet:
        print(image_id)
    return 0


def history(prog: str, argv: list[str]) -> int:
    from orch.cli.format import human_duration, human_size

    p = Parser(prog=prog, description="Show the history of an image.")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    p.add_argument("-H", "--human", default="true", help="sizes and dates in human-readable form (default true)")
    p.add_argument("--format", help="print with a Go template")
    p.add_argument("image", metavar="IMAGE")
    args = p.parse_args(argv)
    rows = _client().call("GET", f"/images/{_ref(args.image)}/history")
    human = args.human.lower() not in ("false", "0", "no")
    now = time.time()
    if args.quiet:
        for r in rows:
            print(r["Id"] if args.no_trunc or r["Id"] == "<missing>" else r["Id"].split(":", 1)[1][:12])
        return 0
    view = []
    for r in rows:
        created_by = r["CreatedBy"].replace("\t", " ")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        view.append({
            "ID": r["Id"] if args.no_trunc or r["Id"] == "<missing>" else r["Id"].split(":", 1)[1][:12],
            "CreatedSince": (human_duration(now - r["Created"]) + " ago") if human else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["Created"])),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["Created"])),
            "CreatedBy": created_by, "Size": human_size(r["Size"]) if human else str(r["Size"]), "Comment": r.get("Comment", ""),
        })
    if args.format:
        from orch.cli.format import render

        for v in view:
            print(render(args.format, v))
        return 0
    headers = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    table = [headers] + [[v["ID"], v["CreatedSince"], v["CreatedBy"], v["Size"], v["Comment"]] for v in view]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers) - 1)]
    for row in table:
        print("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "   " + row[-1])
    return 0


def commit(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Create a new image from a container's changes.")
    p.add_argument("-a", "--author", default="", help='author (e.g. "Jane Doe <jane@example.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="apply a Dockerfile instruction to the image (repeatable)")
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-p", "--pause", default="true", help="pause the container during the commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", metavar="REPOSITORY[:TAG]", nargs="?")
    args = p.parse_args(argv)
    if args.repository:
        from orch.node.runtime.reference import parse as parse_ref

        parse_ref(args.repository)
    body = {"repo": args.repository, "comment": args.message, "author": args.author, "changes": args.change,
            "pause": args.pause.lower() not in ("false", "0", "no")}
    answer = _client().call("POST", f"/containers/{quote(args.container, safe='')}/commit", body)
    print(answer["Id"])
    return 0
