"""The node's API: what a client may ask of a node, and how docker's flags become a request.

Both sides import this package and nothing else of each other: the agent (orch.node.agent)
validates and serves requests; the clients (orch.cli, orch.compose, later orch.cluster and the
Docker Engine API) build them. So the CLI and the agent never import one another (the rule,
with the whole table of packages, is in ARCHITECTURE.md and tests/unit/test_import_rules.py).

- `models`: the request and answer bodies (pydantic; only the agent imports them).
- `runflags`, `netflags`, `securityflags`, `supervisionflags`: `run`/`create`'s flags and the
  create request they make (standard library only: the agent parses `orch run`'s argv with
  them, and `orch create` in the CLI does the same).
- `args`: the argument parser every command uses (one-line misuse errors, no abbreviations).
- `times`: docker's time texts on the wire and in tables (RFC 3339, "Up 3 seconds").
"""
