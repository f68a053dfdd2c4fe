"""`orch compose watch`: bring the services up, then follow their `develop.watch` paths and
sync, rebuild or restart on changes (rules: orch/compose/watch.py).

Changes come from the kernel's inotify (the inotify_simple library: a thin ctypes binding),
one watch per directory under each trigger's path, new directories watched as they appear.
Changes are gathered until the files have been quiet for QUIET seconds (compose waits half a
second too), then each service's plan is carried out through the agent's API: files copied
into every container of the service (PUT /containers/{id}/archive, a tar of the changed
files at their container paths), removed ones removed (a detached `rm -rf` exec), images
built and containers recreated (the converge loop of `up`), containers restarted.
"""

import io
import os
import sys
import tarfile
import time

from orch.cli.compose_up import _with_deps, open_stack, parser
from orch.errors import InvalidArgument, OrchError

QUIET = 0.5
MASK_NAMES = ("CREATE", "MODIFY", "CLOSE_WRITE", "DELETE", "MOVED_FROM", "MOVED_TO", "ATTRIB", "DELETE_SELF", "MOVE_SELF")


def main(prog, argv):
    p = parser(prog, "Watch build context for service and rebuild/refresh containers when files are updated")
    p.add_argument("--no-up", action="store_true", help="do not build & start services before watching")
    p.add_argument("--prune", action="store_true", help="prune dangling images on rebuild")
    p.add_argument("--quiet", action="store_true", help="hide build output")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.cli.compose import load_from_options
    from orch.compose.watch import Ignore, compute_triggers

    project = load_from_options(a)
    selected = _with_deps(project, a.services, False)
    triggers = []
    for name in a.services or list(project.services):
        svc = project.services[name]
        triggers += compute_triggers(name, svc.develop, str(project.project_dir))
    if not triggers:
        raise InvalidArgument("none of the selected services is configured for watch, consider setting an 'develop' section")
    project.require_env(selected)
    stack = open_stack(a, project=project, quiet=a.quiet)
    if not a.no_up:
        from orch.scheduler.model import ReconcileOptions

        stack.resolve_images(selected, build=True)
        stack.ensure_resources(selected)
        code = stack.converge(ReconcileOptions(services=tuple(a.services) or None, up_since=time.time()))
        if code:
            return code
    ignores = {t: Ignore(t, *_dockerignore(stack, t.service)) for t in triggers}
    watcher = Watcher([t.path for t in triggers])
    print("Watch enabled", flush=True)
    try:
        while True:
            changes = watcher.wait_for_changes(QUIET)
            apply_changes(stack, triggers, ignores, changes, prune=a.prune)
    except KeyboardInterrupt:
        return 0
    finally:
        watcher.close()


def _dockerignore(stack, service: str):
    """(the build context, its .dockerignore as a Matcher) of a service that builds."""
    from orch.compose.watch import dockerignore_matcher

    build = stack.project.services[service].build
    if build is None:
        return None, None
    context = build.context if os.path.isabs(build.context) else os.path.join(str(stack.project.project_dir), build.context)
    try:
        with open(os.path.join(context, ".dockerignore")) as f:
            return os.path.normpath(context), dockerignore_matcher(f.read())
    except FileNotFoundError:
        return os.path.normpath(context), None


class Watcher:
    """inotify over every directory under the given paths (a file's own directory for a
    file); `wait_for_changes` returns {path: exists} once the changes have been quiet."""

    def __init__(self, paths: list[str]):
        from inotify_simple import INotify, flags

        self.inotify, self.flags = INotify(), flags
        self.mask = 0
        for name in MASK_NAMES:
            self.mask |= getattr(flags, name)
        self.dirs: dict[int, str] = {}
        self.files: set[str] = set()
        for path in paths:
            if os.path.isdir(path):
                self.add_tree(path)
            else:
                self.files.add(path)
                self.add(os.path.dirname(path) or ".")

    def add(self, directory: str) -> None:
        try:
            wd = self.inotify.add_watch(directory, self.mask)
        except OSError:
            return  # gone already, or not a directory
        self.dirs[wd] = directory

    def add_tree(self, root: str) -> list[str]:
        """Watch `root` and every directory below it; return the files found (a directory
        that appeared with files in it: they are changes too)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            self.add(dirpath)
            found += [os.path.join(dirpath, f) for f in filenames]
            dirnames[:] = [d for d in dirnames if d != ".git"]
        return found

    def wait_for_changes(self, quiet: float) -> dict[str, bool]:
        changes: dict[str, bool] = {}
        timeout = None
        while True:
            events = self.inotify.read(timeout=None if timeout is None else int(timeout * 1000))
            if not events:
                if changes:
                    return {p: os.path.lexists(p) for p in changes}
                continue
            for ev in events:
                base = self.dirs.get(ev.wd)
                if base is None:
                    continue
                path = os.path.join(base, ev.name) if ev.name else base
                if ev.mask & self.flags.ISDIR and ev.mask & (self.flags.CREATE | self.flags.MOVED_TO):
                    for f in self.add_tree(path):
                        changes[f] = True
                changes[path] = True
            timeout = quiet

    def close(self) -> None:
        self.inotify.close()


def apply_changes(stack, triggers, ignores, changes: dict[str, bool], *, prune: bool = False) -> None:
    from orch.compose.watch import plan_changes

    plans = plan_changes(triggers, ignores, changes)
    for service, plan in plans.items():
        try:
            if plan.rebuild:
                _rebuild(stack, service, prune=prune)
                continue
            if plan.sync:
                print(f"Syncing service \"{service}\" after {len(plan.sync)} changed files", flush=True)
                for r in _running(stack, service):
                    sync_files(stack.client, r["Id"], plan.sync)
            if plan.restart:
                for r in _running(stack, service):
                    stack.client.call("POST", f"/containers/{r['Id']}/restart")
                print(f"service \"{service}\" restarted", flush=True)
        except OrchError as err:
            print(f"orch: watch: service {service}: {err}", file=sys.stderr, flush=True)


def _running(stack, service: str) -> list[dict]:
    labels = "com.docker.compose.service"
    return [r for r in stack.records(service) if (r["Config"].get("Labels") or {}).get(labels) == service
            and (r["Config"].get("Labels") or {}).get("com.docker.compose.oneoff") != "True" and r["State"]["Status"] == "running"]


def sync_tar(files: dict[str, str]) -> bytes:
    """A tar of host files (container path -> host path) named by their container paths,
    relative to the container's root; what no longer exists is left out."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for inside, host in sorted(files.items()):
            try:
                info = tar.gettarinfo(host, arcname=inside.lstrip("/"))
            except OSError:
                continue
            if info is None or info.isdir():
                continue
            info.mtime = int(info.mtime)
            if info.isreg():
                with open(host, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def sync_files(client, cid: str, sync: dict[str, str | None]) -> None:
    """Copy the changed files into a container (PUT archive at /) and remove the removed ones."""
    present = {inside: host for inside, host in sync.items() if host is not None and os.path.lexists(host)}
    gone = sorted(inside for inside, host in sync.items() if host is None or not os.path.lexists(host))
    if present:
        data = sync_tar(present)
        client.upload("PUT", f"/containers/{cid}/archive?path=%2F", [data])
    if gone:
        client.call("POST", f"/containers/{cid}/exec", {"cmd": ["rm", "-rf", "--", *gone], "detach": True, "env": []})


def _rebuild(stack, service: str, *, prune: bool) -> None:
    from orch.scheduler.model import ReconcileOptions

    print(f"Rebuilding service \"{service}\" after changes were detected...", flush=True)
    stack.resolve_images([service], build=True)
    print(f"service \"{service}\" successfully built", flush=True)
    stack.converge(ReconcileOptions(services=(service,), no_deps=True, up_since=time.time()))
    if prune:
        stack.client.call("POST", "/system/prune", {"containers": False, "images": True})

