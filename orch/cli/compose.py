"""`orch compose`: the stack commands, in docker compose's grammar.

    orch compose [-f FILE]... [-p NAME] [--profile P]... [--env-file F]... [--project-directory D] COMMAND [ARGS...]

Like the top-level dispatcher, this imports only the module of the subcommand that runs. The
group's options are handed on to the subcommand in front of its own arguments, and every
subcommand's parser accepts them too (`add_common_options`), so `orch compose config -f x.yml`
works as well as `orch compose -f x.yml config`. `orch up` and `orch down` are shortcuts that
also take the stack file as a plain argument: `orch up stack.yml` is
`orch compose -f stack.yml up`.
"""

import argparse
import sys
from pathlib import Path

# subcommand -> "module:function"; the module is imported only when its subcommand runs.
SUBCOMMANDS = {
    "config": "orch.cli.compose_config:main",
    "graph": "orch.cli.compose_graph:main",
    "up": "orch.cli.compose_up:main",
    "down": "orch.cli.compose_up:down",
    "ps": "orch.cli.compose_ops:ps",
    "logs": "orch.cli.compose_ops:logs",
    "start": "orch.cli.compose_ops:start",
    "stop": "orch.cli.compose_ops:stop",
    "restart": "orch.cli.compose_ops:restart",
    "kill": "orch.cli.compose_ops:kill",
    "rm": "orch.cli.compose_ops:rm",
    "exec": "orch.cli.compose_ops:exec_",
    "run": "orch.cli.compose_ops:run",
    "build": "orch.cli.compose_ops:build",
    "pull": "orch.cli.compose_ops:pull",
    "top": "orch.cli.compose_ops:top",
    "pause": "orch.cli.compose_ops:pause",
    "unpause": "orch.cli.compose_ops:unpause",
    "scale": "orch.cli.compose_ops:scale",
    "plan": "orch.cli.compose_up:plan",
    "ls": "orch.cli.compose_extra:ls",
    "cp": "orch.cli.compose_extra:cp",
    "port": "orch.cli.compose_extra:port",
    "images": "orch.cli.compose_extra:images",
    "events": "orch.cli.compose_extra:events",
    "wait": "orch.cli.compose_extra:wait",
    "create": "orch.cli.compose_extra:create",
    "attach": "orch.cli.compose_extra:attach",
    "stats": "orch.cli.compose_extra:stats",
    "version": "orch.cli.compose_extra:version",
    "watch": "orch.cli.compose_watch:main",
}

# The group's options: name -> takes a value.
_GLOBAL_OPTIONS = {
    "-f": True,
    "--file": True,
    "-p": True,
    "--project-name": True,
    "--profile": True,
    "--env-file": True,
    "--project-directory": True,
}

USAGE = """usage: orch compose [-f FILE]... [-p NAME] [--profile P]... [--env-file F]... [--project-directory D] COMMAND [ARGS...]

Run a stack of services described by compose files.

Commands: """ + ", ".join(SUBCOMMANDS) + """

Run 'orch compose COMMAND --help' for more on a command."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The stack-selecting options, for every subcommand's parser."""
    group = parser.add_argument_group("stack options")
    group.add_argument("-f", "--file", action="append", dest="files", metavar="FILE", help="stack file (repeat to merge several; - reads standard input)")
    group.add_argument("-p", "--project-name", dest="project_name", metavar="NAME", help="project name")
    group.add_argument("--profile", action="append", dest="profiles", metavar="PROFILE", help="enable a profile (repeatable)")
    group.add_argument("--env-file", action="append", dest="env_files", metavar="FILE", help="variables for interpolation (repeatable)")
    group.add_argument("--project-directory", dest="project_directory", metavar="DIR", help="the project's directory (default: the first file's)")


def load_from_options(opts: argparse.Namespace):
    """The Project that the common options select (see `add_common_options`). `-f -` reads
    the stack file from standard input. A service's missing env_file is not an error here:
    the commands that create containers call `project.require_env(services)` for theirs."""
    from orch.spec import load_project

    return load_project(
        [f if f == "-" else Path(f) for f in opts.files] if opts.files else None,
        project_dir=Path(opts.project_directory) if opts.project_directory else None,
        env_files=[Path(f) for f in opts.env_files] if opts.env_files else None,
        profiles=opts.profiles,
        project_name=opts.project_name,
        lazy_env_files=True,
    )


def split_global(argv: list[str]) -> tuple[list[str], list[str]]:
    """(group options, [subcommand, its arguments...]): the group's options end at the first
    word that is not one of them."""
    i = 0
    while i < len(argv):
        word = argv[i]
        name = word.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS and "=" not in word:
            i += 2
        elif name in _GLOBAL_OPTIONS or (word[:2] in ("-f", "-p") and len(word) > 2):
            i += 1
        else:
            break
    return argv[:i], argv[i:]


def main(prog: str, argv: list[str]) -> int:
    options, rest = split_global(argv)
    if not rest or rest[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if rest else 2
    name = rest[0]
    target = SUBCOMMANDS.get(name)
    if target is None:
        import difflib

        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; run 'orch compose --help' for the list"
        print(f"orch: unknown command 'orch compose {name}'{hint}", file=sys.stderr)
        return 2
    return dispatch(f"{prog} {name}", target, _long_form(options) + rest[1:])


def _long_form(options: list[str]) -> list[str]:
    """The group's options as `--file=X`, so a subcommand whose own -f means something else
    (`logs -f` follows) still reads them right."""
    out = []
    i = 0
    while i < len(options):
        word = options[i]
        if word in ("-f", "-p"):
            out.append(("--file=" if word == "-f" else "--project-name=") + options[i + 1])
            i += 2
            continue
        if word[:2] in ("-f", "-p") and not word.startswith("--"):
            out.append(("--file=" if word[1] == "f" else "--project-name=") + word[2:].lstrip("="))
        else:
            out.append(word)
        i += 1
    return out


def dispatch(prog: str, target: str, argv: list[str]) -> int:
    """Import the subcommand's module and run it; a module that does not exist yet is one
    line and exit 2, as `orch.cli.run_command` does for the top-level commands."""
    import importlib

    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name) and err.name.startswith("orch.cli"):
            print(f"orch: '{prog}' is not available yet", file=sys.stderr)
            return 2
        raise
    func = getattr(module, func_name, None)
    if func is None:
        print(f"orch: '{prog}' is not available yet", file=sys.stderr)
        return 2
    return int(func(prog, argv) or 0)


def _shortcut(command: str, argv: list[str]) -> int:
    """`orch up stack.yml -d` -> `orch compose -f stack.yml up -d`."""
    files: list[str] = []
    rest: list[str] = []
    for word in argv:
        if not word.startswith("-") and word.endswith((".yml", ".yaml")) and Path(word).is_file():
            files += ["-f", word]
        else:
            rest.append(word)
    return main("orch compose", files + [command] + rest)


def up_shortcut(prog: str, argv: list[str]) -> int:
    return _shortcut("up", argv)


def down_shortcut(prog: str, argv: list[str]) -> int:
    return _shortcut("down", argv)
