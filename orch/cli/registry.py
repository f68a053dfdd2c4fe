"""Registry commands: pull, push, login, logout, with docker's flags and output.

The transfers run in this process, on the node's image store (ImageStore is safe to share
between processes: its references file is changed under an flock and replaced atomically),
rather than in the agent, for three reasons: the credentials are the user's
(~/.config/orch/auth.json, owner-only) and never have to cross a socket; progress bars need
this process's terminal; and a long transfer does not tie up an agent worker thread. The
agent serves the same functions at POST /images/pull and /images/push for API clients
(orch/node/agent/routes_registry.py).
"""

import getpass
import sys

from orch.cli.args import Parser
from orch.errors import InvalidArgument




def _store():
    from orch import paths
    from orch.node.runtime.images import ImageStore

    return ImageStore(paths.root())


def _events(quiet: bool):
    from orch.registry import progress

    if quiet:
        return progress.ignore, None
    r = progress.renderer(sys.stdout)
    return r, r


def pull(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} pull", description="Download an image from a registry.")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image reference")
    p.add_argument("--platform", default=None, help="only linux/amd64 is supported")
    args = p.parse_args(argv)
    if args.platform not in (None, "linux/amd64", "linux/x86_64"):
        raise InvalidArgument(f"{prog} pull: --platform {args.platform}: orch runs linux/amd64 images only")
    from orch.registry.pull import pull as do_pull

    events, r = _events(args.quiet)
    try:
        do_pull(_store(), args.image, events=events)
    finally:
        if r is not None:
            r.close()
    if args.quiet:
        from orch.node.runtime import reference

        print(reference.normalize(args.image))
    return 0


def push(prog: str, argv: list[str]) -> int:
    p = Parser(prog=f"{prog} push", description="Upload an image to a registry.")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the manifest digest")
    args = p.parse_args(argv)
    from orch.registry.push import push as do_push

    events, r = _events(args.quiet)
    try:
        digest = do_push(_store(), args.image, events=events)
    finally:
        if r is not None:
            r.close()
    if args.quiet:
        print(digest)
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
