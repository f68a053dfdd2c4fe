"""Image commands with docker's flags and output: images, rmi, image (ls, inspect, rm, import,
tag, save, load), tag, load, save, bootstrap.

Each command is `name(prog, argv) -> int` and asks the node agent through `orch.client`. The
agent works on the node's files, so paths are made absolute here; `-` (stdin, stdout) goes
through a temporary file. Errors are OrchErrors and print as one line (see orch/cli/__init__).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from urllib.parse import quote

from orch.api.args import Parser
from orch.errors import InvalidArgument, NotFound, OrchError

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE", "Digest": "DIGEST"}
DEFAULT_IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"




def _call(method: str, path: str, body=None):
    """Ask the node agent; `orch.cli._agent.client()` starts one when none answers."""
    try:
        from orch.cli._agent import client
    except ImportError:  # a build without the agent's CLI side: talk to the socket directly
        from orch.client import Client as client
    return client().call(method, path, body)


def _ref_path(ref: str) -> str:
    return quote(ref, safe="/:@")


# -- images / image ls ---------------------------------------------------------------------


def _rows(summaries: list[dict], no_trunc: bool, now: float) -> list[dict]:
    from orch.api.times import human_duration
    from orch.cli.format import human_size

    rows = []
    for s in summaries:
        image_id = s["Id"] if no_trunc else s["Id"].split(":", 1)[1][:12]
        created = s.get("Created", 0)
        base = {"ID": image_id, "CreatedSince": human_duration(now - created) + " ago" if created else "N/A",
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)), "Size": human_size(s.get("Size", 0)),
                "Digest": "<none>"}
        tags = s.get("RepoTags") or []
        if not tags:
            rows.append({"Repository": "<none>", "Tag": "<none>", **base})
        for t in tags:
            slash, colon = t.rfind("/"), t.rfind(":")
            repo, tag = (t[:colon], t[colon + 1 :]) if colon > slash else (t, "<none>")
            rows.append({"Repository": repo, "Tag": tag, **base})
    return rows


def _matches(row: dict, pattern: str) -> bool:
    from fnmatch import fnmatch

    repo, _, tag = pattern.partition(":") if pattern.rfind(":") > pattern.rfind("/") else (pattern, "", "")
    return fnmatch(row["Repository"], repo) and (not tag or fnmatch(row["Tag"], tag))


def images(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="List images.")
    p.add_argument("repository", nargs="?", help="only REPOSITORY[:TAG] (wildcards allowed)")
    p.add_argument("-a", "--all", action="store_true", help="show all images (orch keeps no intermediate images)")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p.add_argument("--format", help="Go template, or 'table TEMPLATE', or 'json'")
    args = p.parse_args(argv)
    from orch.cli.format import render_rows

    rows = _rows(_call("GET", "/images"), args.no_trunc, time.time())
    if args.repository:
        rows = [r for r in rows if _matches(r, args.repository)]
    if args.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        for image_id in seen:
            print(image_id)
        return 0
    fmt = args.format or DEFAULT_IMAGES_FORMAT
    if fmt == "json":
        fmt = "{{json .}}"
    for line in render_rows(fmt, rows, IMAGE_HEADERS):
        print(line)
    return 0


# -- inspect ---------------------------------------------------------------------------------


def _inspect(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Show images as docker's JSON.")
    p.add_argument("-f", "--format", help="Go template, e.g. '{{json .RootFS.Layers}}'")
    p.add_argument("image", nargs="+")
    args = p.parse_args(argv)
    found, failed = [], 0
    for ref in args.image:
        try:
            found.append(_call("GET", f"/images/{_ref_path(ref)}/json"))
        except NotFound as err:
            print(f"orch: {err}", file=sys.stderr)
            failed += 1
    if args.format:
        from orch.cli.format import render, unescape

        fmt = "{{json .}}" if args.format == "json" else unescape(args.format)
        for item in found:
            print(render(fmt, item))
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    return 1 if failed else 0


# -- history -------------------------------------------------------------------------------

HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
DEFAULT_HISTORY_FORMAT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _bool_flag(text: str) -> bool:
    """A docker boolean flag's value (`--human=false`), as Go's strconv.ParseBool reads it."""
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}; use true or false")


def _rfc3339(seconds: float) -> str:
    """Go's time.RFC3339 in local time, as `docker history --human=false` prints CREATED."""
    local = time.localtime(seconds)
    offset = time.strftime("%z", local)
    zone = "Z" if offset in ("+0000", "-0000") else f"{offset[:3]}:{offset[3:]}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + zone


def history(prog: str, argv: list[str]) -> int:
    """`orch image history` (and `orch history`): docker's columns, truncation and flags."""
    p = Parser(prog=prog, description="Show the history of an image, newest first.")
    p.add_argument("-H", "--human", type=_bool_flag, nargs="?", const=True, default=True, metavar="BOOL",
                   help="sizes and dates in human-readable form (default true; --human=false for raw numbers)")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    p.add_argument("--format", help="print with a Go template")
    p.add_argument("image")
    args = p.parse_args(argv)
    from orch.api.times import human_duration
    from orch.cli.format import human_size, render_rows

    items = _call("GET", f"/images/{_ref_path(args.image)}/history")
    now = time.time()
    rows = []
    for h in items:
        image_id = h["Id"] if args.no_trunc or h["Id"] == "<missing>" else h["Id"].split(":", 1)[1][:12]
        created_by = h["CreatedBy"].replace("\t", " ")
        if not args.no_trunc:
            created_by = _ellipsis(created_by, 45)
        rows.append({"ID": image_id, "CreatedSince": human_duration(now - h["Created"]) + " ago" if args.human else _rfc3339(h["Created"]),
                     "CreatedAt": _rfc3339(h["Created"]), "CreatedBy": created_by,
                     "Size": human_size(h["Size"]) if args.human else str(h["Size"]), "Comment": h["Comment"]})
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    for line in render_rows(args.format or DEFAULT_HISTORY_FORMAT, rows, HISTORY_HEADERS):
        print(line)
    return 0


# -- rmi / image rm --------------------------------------------------------------------------


def rmi(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Remove images.")
    p.add_argument("-f", "--force", action="store_true", help="untag an image that containers use, or one with many names")
    p.add_argument("--no-prune", action="store_true", help="accepted for docker compatibility")
    p.add_argument("image", nargs="+")
    args = p.parse_args(argv)
    failed = 0
    for ref in args.image:
        try:
            answer = _call("DELETE", f"/images/{_ref_path(ref)}?force={'1' if args.force else '0'}")
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed += 1
            continue
        for line in answer["lines"]:
            print(line)
    return 1 if failed else 0


# -- tag -------------------------------------------------------------------------------------


def tag(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Give an image another name.")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    args = p.parse_args(argv)
    _call("POST", "/images/tag", {"source": args.source, "target": args.target})
    return 0


# -- import / load / save ------------------------------------------------------------------


def _stdin_to_file(prefix: str) -> str:
    if sys.stdin.isatty():
        raise InvalidArgument("refusing to read an archive from a terminal; give a file or pipe one in")
    fd, name = tempfile.mkstemp(prefix=prefix)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    os.chmod(name, 0o600)
    return name


def _import(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Make a one-layer image from a rootfs tar, tar.gz or directory.")
    p.add_argument("-c", "--change", action="append", default=[], help="Dockerfile instruction to apply, e.g. 'CMD [\"sh\"]'")
    p.add_argument("-m", "--message", help="history comment")
    p.add_argument("--platform", help="only linux/amd64")
    p.add_argument("source", metavar="FILE|DIR|-")
    p.add_argument("ref", nargs="?", metavar="REPOSITORY[:TAG]")
    args = p.parse_args(argv)
    if args.platform and args.platform not in ("linux/amd64", "linux"):
        raise InvalidArgument(f"--platform {args.platform}: orch only runs linux/amd64 images")
    if "://" in args.source:
        raise InvalidArgument(f"cannot import from a URL ({args.source}); download it first and give the file")
    temp = _stdin_to_file("orch-import-") if args.source == "-" else None
    try:
        source = temp or os.path.abspath(args.source)
        answer = _call("POST", "/images/import", {"source": source, "ref": args.ref, "changes": args.change, "message": args.message})
    finally:
        if temp:
            os.unlink(temp)
    print(answer["id"])
    return 0


def load(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Load images from a docker-archive or OCI layout (tar or directory).")
    p.add_argument("-i", "--input", help="the archive (default: stdin)")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    temp = _stdin_to_file("orch-load-") if args.input in (None, "-") else None
    try:
        answer = _call("POST", "/images/load", {"path": temp or os.path.abspath(args.input)})
    finally:
        if temp:
            os.unlink(temp)
    if not args.quiet:
        for line in answer["lines"]:
            print(line)
    return 0


def save(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Save images to a docker-archive (default) or an OCI layout tar.")
    p.add_argument("-o", "--output", help="the file to write (default: stdout)")
    p.add_argument("--format", choices=["docker", "oci"], default="docker", help="archive format (default docker)")
    p.add_argument("image", nargs="+")
    args = p.parse_args(argv)
    if args.output in (None, "-"):
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal; use -o FILE or redirect stdout")
        with tempfile.TemporaryDirectory(prefix="orch-save-") as d:
            out = os.path.join(d, "images.tar")
            _call("POST", "/images/save", {"refs": args.image, "path": out, "format": args.format})
            with open(out, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        return 0
    _call("POST", "/images/save", {"refs": args.image, "path": os.path.abspath(args.output), "format": args.format})
    return 0


# -- bootstrap ------------------------------------------------------------------------------


def bootstrap(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Make a base image from Debian packages: busybox (busybox:latest) or debian (debian:bookworm).")
    p.add_argument("name", choices=["busybox", "debian"])
    p.add_argument("--force", action="store_true", help="build again even if the image exists")
    args = p.parse_args(argv)
    answer = _call("POST", "/images/bootstrap", {"name": args.name, "force": args.force})
    print(answer["message"])
    return 0


# -- image SUBCOMMAND ----------------------------------------------------------------------

SUBCOMMANDS = {
    "ls": images, "list": images, "inspect": _inspect, "history": history, "rm": rmi, "remove": rmi, "import": _import, "tag": tag,
    "save": save, "load": load,
}


def image_group(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nCommands: {', '.join(SUBCOMMANDS)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    func = SUBCOMMANDS.get(name)
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {name}'; choose one of: {', '.join(SUBCOMMANDS)}")
    return func(f"{prog} {name}", rest)
