"""The `orch` command line: a lean dispatcher.

Starting a container must cost tens of milliseconds, so this module imports almost nothing:
it looks at the first word and imports only the module that serves that command. Each command
module has `main(prog, argv) -> int` and builds its own argparse parser.

Errors: an `OrchError` is printed as one line, `orch: <message>`, with its exit code (a stack
file's several problems as one such line each). Anything
else is a bug; it is printed as one line too (set ORCH_DEBUG=1 for the traceback).
"""

import os
import sys

# command -> "module:function". The module is imported only when its command runs.
COMMANDS = {
    # stacks (docker compose's grammar)
    "compose": "orch.cli.compose:main",
    "up": "orch.cli.compose:up_shortcut",
    "down": "orch.cli.compose:down_shortcut",
    # containers (docker's grammar)
    "run": "orch.cli.fastrun:run",
    "create": "orch.cli.container:create",
    "ps": "orch.cli.container:ps",
    "logs": "orch.cli.container:logs",
    "top": "orch.cli.container:top",
    "exec": "orch.cli.container:exec_",
    "start": "orch.cli.container:start",
    "stop": "orch.cli.container:stop",
    "restart": "orch.cli.container:restart",
    "kill": "orch.cli.container:kill",
    "pause": "orch.cli.container:pause",
    "unpause": "orch.cli.container:unpause",
    "rm": "orch.cli.container:rm",
    "inspect": "orch.cli.container:inspect",
    "wait": "orch.cli.container:wait",
    "container": "orch.cli.container:container_group",
    "port": "orch.cli.container:port",
    "rename": "orch.cli.container:rename",
    "update": "orch.cli.container:update",
    "stats": "orch.cli.stats:main",
    "attach": "orch.cli.container:attach",
    "cp": "orch.cli.cp:cp",
    "export": "orch.cli.cp:export",
    # networks and volumes
    "network": "orch.cli.network:main",
    "volume": "orch.cli.volume:main",
    # images
    "images": "orch.cli.image:images",
    "rmi": "orch.cli.image:rmi",
    "image": "orch.cli.image:image_group",
    "load": "orch.cli.image:load",
    "save": "orch.cli.image:save",
    "tag": "orch.cli.image:tag",
    "build": "orch.cli.fastrun:build",
    "history": "orch.cli.image:history",
    "diff": "orch.cli.container:diff",
    "commit": "orch.cli.build:commit",
    "pull": "orch.cli.registry:pull",
    "push": "orch.cli.registry:push",
    "login": "orch.cli.registry:login",
    "logout": "orch.cli.registry:logout",
    # the cluster (docker swarm's grammar)
    "swarm": "orch.cli.swarm:main",
    "node": "orch.cli.node:main",
    "service": "orch.cli.service:main",
    "stack": "orch.cli.stack:main",
    # node
    "system": "orch.cli.system:system_group",
    "info": "orch.cli.system:info",
    "version": "orch.cli.system:version",
    "events": "orch.cli.events:main",
    "agent": "orch.cli.system:agent",
    "bootstrap": "orch.cli.image:bootstrap",
}

USAGE = """usage: orch COMMAND [ARGS...]

A declarative multi-container orchestrator on real Linux containers.

Stacks:      compose (config, graph, up, down, ps, logs, ...), up, down
Containers:  run, create, ps, logs, top, exec, start, stop, restart, kill, pause, unpause,
             rm, inspect, wait, port, rename, update, stats, attach, cp, export,
             container (... prune)
Networks:    network (create, ls, inspect, rm, prune, connect, disconnect)
Volumes:     volume (create, ls, inspect, rm, prune)
Images:      images, image, rmi, load, save, tag, build, history, commit, diff, pull, push,
             login, logout
Cluster:     swarm (init, join, join-token, leave, update), node (ls, inspect, update, promote,
             demote, rm, ps), service (create, ls, ps, inspect, logs, scale, update, rollback,
             rm), stack (deploy, ls, ps, services, rm)
Node:        info, version, events, system (df, prune, info, events), agent, bootstrap

Run 'orch COMMAND --help' for more on a command."""


def main(argv: list[str] | None = None) -> int:
    from_shell, argv = argv is None, sys.argv[1:] if argv is None else argv
    lean = argv[:1] in (["run"], ["build"])  # clients of built-in modules only (fastrun.py)
    if "site" not in sys.modules and not lean:
        # Started by the launcher without `site` (orch/cli/launcher.py): every command but
        # `run` and `build` needs site-packages.
        import site

        site.main()
    if from_shell and lean:
        # `orch run` from a shell: once the container is done nothing is left to flush or
        # close, and the interpreter's teardown would add about 2 ms to the command people time.
        code = run_command(f"orch {argv[0]}", COMMANDS[argv[0]], argv[1:])
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None when the shell closed it
                stream.flush()
        os._exit(code)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-v", "--version"):
        from orch import __version__

        print(f"orch version {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    target = COMMANDS.get(name)
    if target is None:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; run 'orch --help' for the list"
        print(f"orch: unknown command '{name}'{hint}", file=sys.stderr)
        return 2
    return run_command(f"orch {name}", target, rest)


def run_command(prog: str, target: str, argv: list[str]) -> int:
    from orch.errors import OrchError

    module_name, func_name = target.split(":")
    try:
        module = __import__(module_name, fromlist=[func_name])
        func = getattr(module, func_name)
        return int(func(prog, argv) or 0)
    except OrchError as err:
        # Several problems (a stack file's) are one line each, every line in the same form.
        sys.stderr.write("".join(f"orch: {line}\n" for line in str(err).splitlines() or [""]))
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `orch ps | head`: the reader left; that is not an error worth a message.
        try:
            sys.stdout = None
        finally:
            return 0
    except (ImportError, AttributeError) as err:
        if os.environ.get("ORCH_DEBUG"):
            raise
        print(f"orch: '{prog}' is not available in this build ({err})", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line, the traceback on request
        if os.environ.get("ORCH_DEBUG"):
            raise
        print(f"orch: internal error in '{prog}': {type(err).__name__}: {err} (set ORCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 70
