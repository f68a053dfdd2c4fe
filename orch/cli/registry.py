"""Registry commands: pull, push, login, logout, with docker's flags and output.

`pull` and `push` go through the agent (POST /images/pull and /images/push), which owns the
image store, as docker's CLI asks dockerd: the CLI sends the user's credentials for that
registry with the request (from ~/.config/orch/auth.json, as docker's X-Registry-Auth carries
them) and draws the agent's progress events on the user's terminal (bars when stdout is a
terminal, docker's plain lines otherwise). Which registries are spoken to in plain HTTP is the
agent's setting (ORCH_INSECURE_REGISTRIES in its environment), as it is dockerd's.

`login` and `logout` stay here: they check the credentials against the registry and keep
them in the user's own file, which no agent reads.
"""

import getpass
import json
import sys

from orch.api.args import Parser
from orch.errors import InvalidArgument, from_kind


def _auth(ref: str) -> dict:
    """The user's stored credentials for the registry of `ref`, as the request's "auth"."""
    from orch.registry import credentials, names

    try:
        domain = names.locate(ref).ref.domain
    except InvalidArgument:
        return {}  # the agent says what is wrong with the reference
    found = credentials.lookup(domain)
    return {"auth": {"username": found[0], "password": found[1]}} if found else {}


def _transfer(path: str, ref: str, quiet: bool) -> list[dict]:
    """Ask the agent for a pull or a push of `ref`; draw its events; return the last ones
    (an error, which travels in-band once the stream has begun, is raised)."""
    from orch.cli._agent import client
    from orch.registry import progress

    draw = None if quiet else progress.renderer(sys.stdout)
    tail: list[dict] = []
    buf = b""
    try:
        for chunk in client().stream("POST", path, {"ref": ref, **_auth(ref)}):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise from_kind(event.get("kind", "error"), event["error"])
                tail = (tail + [event])[-3:]
                if draw is not None and "status" in event:
                    draw(event)
    finally:
        if draw is not None:
            draw.close()
    return tail


def pull(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} pull", description="Download an image from a registry.")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image reference")
    p.add_argument("--platform", default=None, help="only linux/amd64 is supported")
    args = p.parse_args(argv)
    if args.platform not in (None, "linux/amd64", "linux/x86_64"):
        raise InvalidArgument(f"{prog} pull: --platform {args.platform}: orch runs linux/amd64 images only")
    tail = _transfer("/images/pull", args.image, args.quiet)
    if args.quiet and tail:
        print(tail[-1]["status"])  # the last event names the image pulled (docker's last line)
    return 0


def push(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} push", description="Upload an image to a registry.")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the manifest digest")
    args = p.parse_args(argv)
    tail = _transfer("/images/push", args.image, args.quiet)
    if args.quiet:
        print(next((e["aux"]["Digest"] for e in reversed(tail) if "aux" in e), ""))
    return 0


def login(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} login", description="Log in to a registry (Docker Hub when no server is given).")
    p.add_argument("server", nargs="?", default=None, metavar="SERVER")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="insecure: it shows in the process list; prefer --password-stdin")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    args = p.parse_args(argv)
    from orch.registry import credentials, names
    from orch.registry.client import RegistryClient

    if args.password and args.password_stdin:
        raise InvalidArgument(f"{prog} login: --password and --password-stdin are mutually exclusive")
    username = args.username
    if args.password_stdin:
        if not username:
            raise InvalidArgument(f"{prog} login: --password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = args.password
        if args.password:
            print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if not username:
        if not sys.stdin.isatty():
            raise InvalidArgument(f"{prog} login: give --username (stdin is not a terminal to ask on)")
        username = input("Username: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidArgument(f"{prog} login: give --password-stdin (stdin is not a terminal to ask on)")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument(f"{prog} login: the user name and the password must not be empty")
    key = names.credentials_key(args.server)
    host = names.DOCKER_HUB_API if key == names.DOCKER_HUB_KEY else key
    import os

    with RegistryClient(host, names.scheme_for(host, os.environ.get("ORCH_INSECURE_REGISTRIES", "")), (username, password)) as client:
        client.ping()  # refuse to store credentials the registry does not accept
    credentials.save(args.server, username, password)
    print("Login Succeeded")
    return 0


def logout(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} logout", description="Forget the credentials of a registry (Docker Hub when no server is given).")
    p.add_argument("server", nargs="?", default=None, metavar="SERVER")
    args = p.parse_args(argv)
    from orch.registry import credentials

    key, had = credentials.remove(args.server)
    print(f"Removing login credentials for {key}" if had else f"Not logged in to {key}")
    return 0
