"""`orch commit`, with docker's flags and output. (`orch build` is a client of the agent's
build.sock, orch/cli/fastrun.py, whose command line the agent reads with orch.build.flags;
`orch history` is `orch image history`, in orch/cli/image.py.) Errors are OrchErrors and
print as one line.
"""

from orch.api.args import Parser
from orch.client import quoted


def _client():
    from orch.cli._agent import client

    return client()


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
    answer = _client().call("POST", f"/containers/{quoted(args.container)}/commit", body)
    print(answer["Id"])
    return 0
