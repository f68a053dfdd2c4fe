"""`orch compose config`: the stack as orch understands it, or just whether it is valid.

Prints the merged, interpolated, normalized stack like `docker compose config`; with options,
only the service, volume, network or profile names, only the keys orch does not act on
(`--unsupported`), or nothing (`-q`, validation only). Problems in the files come back as one
line each (`FILE:LINE:COL: key.path: what is wrong`) and a non-zero exit.
"""

import argparse
import json
import sys

from orch.api.args import Parser
from orch.cli.compose import add_common_options, load_from_options


def dump_yaml(stack: dict) -> str:
    """YAML as people write it: keys in the model's order, multi-line text as `|` blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(stack, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Validate the stack and print it in its normalized form.")
    add_common_options(parser)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--services", action="store_true", help="print the names of the (active) services")
    only.add_argument("--volumes", action="store_true", help="print the names of the volumes")
    only.add_argument("--networks", action="store_true", help="print the names of the networks")
    only.add_argument("--profiles", dest="list_profiles", action="store_true", help="print the profiles the services name")
    only.add_argument("--unsupported", action="store_true", help="print the keys present that orch accepts but does not act on")
    only.add_argument("-q", "--quiet", action="store_true", help="only validate; print nothing")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format (default: yaml)")
    return parser


def main(prog: str, argv: list[str]) -> int:
    opts = build_parser(prog).parse_args(argv)
    project = load_from_options(opts)
    project.require_env()  # every service is printed, so every env_file must be there
    for warning in project.warnings:
        print(f"orch: warning: {warning}", file=sys.stderr)
    if opts.quiet:
        return 0
    names = None
    if opts.services:
        names = list(project.services)
    elif opts.volumes:
        names = list(project.volumes)
    elif opts.networks:
        names = list(project.networks)
    elif opts.list_profiles:
        names = project.profiles()
    elif opts.unsupported:
        names = project.unsupported()
    if names is not None:
        if opts.format == "json":
            print(json.dumps(names))
        else:
            for name in names:
                print(name)
        return 0
    stack = project.to_dict(escape_dollars=True)
    if opts.format == "json":
        print(json.dumps(stack, indent=2))
    else:
        sys.stdout.write(dump_yaml(stack))
    return 0
