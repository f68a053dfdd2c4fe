"""`orch build`'s command line, read where the build runs (the agent) as well as anywhere
else that needs it: docker's flags in, the build request body out.

The `orch build` client sends its argv, environment and working directory to the agent's
build.sock (orch/cli/fastrun.py), as `orch run` does to run.sock, so the command costs
Python's start and no imports; the agent parses it here, with a parser it built once. Paths
are made absolute against the client's working directory, and `--build-arg NAME` takes NAME
from the client's environment, as docker's CLI does. Misuse raises InvalidArgument (one line); `--help` raises
HelpShown with the text for the client to print.
"""

import argparse
import os

from orch.errors import InvalidArgument


# The RUN steps' networks (BuildKit's `RUN --network=`, `docker build --network`) and the
# entitlements `--allow` grants (BuildKit's; network.host lets RUN --network=host through).
NETWORKS = ("default", "none", "host")
ENTITLEMENTS = ("network.host",)


class HelpShown(Exception):
    """`orch build --help`, parsed away from the client: the text goes back to it."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise InvalidArgument(f"{message}; see '{self.prog} --help'")

    def print_help(self, file=None):
        raise HelpShown(self.format_help())


_parser: _Parser | None = None


def build_parser() -> _Parser:
    global _parser
    if _parser is None:  # parse_args leaves a parser as it was: one is enough
        p = _Parser(prog="orch build", description="Build an image from a Dockerfile.")
        p.add_argument("-t", "--tag", action="append", default=[], help="name and optionally a tag, NAME[:TAG] (repeatable)")
        p.add_argument("-f", "--file", help="the Dockerfile (default: PATH/Dockerfile)")
        p.add_argument("--build-arg", action="append", default=[], help="set a build-time variable, KEY=VALUE (repeatable)")
        p.add_argument("--target", help="build this stage and the ones it needs")
        p.add_argument("--no-cache", action="store_true", help="do not use the cache")
        p.add_argument("--label", action="append", default=[], help="set metadata on the image, KEY=VALUE (repeatable)")
        p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
        p.add_argument("--network", choices=NETWORKS, default="default",
                       help="the RUN steps' network: default (the node's bridge, NAT out), none, host")
        p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                       help="network.host: let the Dockerfile's RUN --network=host use the host's network")
        p.add_argument("path", metavar="PATH", help="the build context directory")
        _parser = p
    return _parser


def _key_value(text: str, flag: str, environ: dict) -> tuple[str, str | None]:
    key, eq, value = text.partition("=")
    if not key:
        raise InvalidArgument(f"{flag} {text!r}: want KEY=VALUE")
    if not eq:
        # docker: `--build-arg NAME` takes the value from the environment, if set.
        return key, environ.get(key)
    return key, value


def parse_build(argv: list[str], *, environ: dict, cwd: str) -> tuple[dict, bool]:
    """(the POST /build body, whether -q was given) for a client in `cwd` with `environ`."""
    args = build_parser().parse_args(argv)
    if args.path == "-" or "://" in args.path:
        raise InvalidArgument(f"orch build: the build context must be a directory on this node, not {args.path!r}")
    context = os.path.normpath(os.path.join(cwd, args.path))
    if not os.path.isdir(context):
        raise InvalidArgument(f"orch build: unable to prepare context: path {args.path!r} not found or not a directory")
    from orch.node.runtime.reference import parse as parse_ref

    for tag in args.tag:
        parse_ref(tag)
    build_args = {}
    for text in args.build_arg:
        key, value = _key_value(text, "--build-arg", environ)
        if value is not None:
            build_args[key] = value
    labels = {}
    for text in args.label:
        key, value = _key_value(text, "--label", environ)
        labels[key] = value if value is not None else ""
    for entitlement in args.allow:
        if entitlement not in ENTITLEMENTS:
            raise InvalidArgument(f"orch build: unknown entitlement {entitlement!r} for --allow; orch knows {', '.join(ENTITLEMENTS)}")
    body = {
        "context": context, "dockerfile": os.path.normpath(os.path.join(cwd, args.file)) if args.file else None,
        "tags": args.tag, "build_args": build_args, "target": args.target, "no_cache": args.no_cache, "labels": labels,
        "network": args.network,
    }
    if args.allow:
        body["allow"] = sorted(set(args.allow))
    return body, args.quiet
