"""`compose watch`'s rules, pure: the `develop.watch` triggers of a service, which changed
files count, and what a batch of changes does to each service.

A trigger (compose-spec's develop.watch entry) is {action, path, target, ignore}:
- `sync`: a changed file is copied to `target` + its path below `path` in every container of
  the service; a removed one is removed there;
- `rebuild`: the service's image is built again and its containers recreated;
- `sync+restart`: sync, then the containers are restarted;
- `restart`: the containers are restarted.

What is ignored, as compose's watcher ignores it (pkg/watch, cmd/compose/watch.go):
- editors' and tools' temporary files (EphemeralPathMatcher: `*~`, `.*.swp`, `.#*`, `#*#`,
  `4913`, JetBrains' `___jb_tmp___`, `.idea/`, kate's swap, Go's umask probe);
- anything in a `.git` directory;
- what the build context's .dockerignore excludes, for a file inside the build context;
- the trigger's own `ignore` patterns, relative to the trigger's path (.dockerignore syntax).
Patterns match as docker's .dockerignore does (orch.build.dockerignore).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from orch.build.dockerignore import Matcher, parse_dockerignore
from orch.errors import InvalidArgument

ACTIONS = ("sync", "rebuild", "sync+restart", "restart")
EPHEMERAL = ("**/*___jb_old___", "**/*___jb_tmp___", "**/.idea/**", "**/.#*", "**/#*#", "**/4913", "**/*~", "**/.*.swp",
             "**/.*.swx", "**/.*.swo", "**/.*.swn", "**/.*.kate-swp", "**/*-go-tmp-umask")
_EPHEMERAL = Matcher(list(EPHEMERAL))
_GIT = Matcher(["**/.git", "**/.git/**", ".git", ".git/**"])


@dataclass(frozen=True)
class Trigger:
    service: str
    action: str
    path: str  # absolute, on the host
    target: str = ""  # absolute, in the container (sync actions)
    ignore: tuple[str, ...] = ()


@dataclass
class Plan:
    """What a batch of changes does to one service."""

    sync: dict[str, str | None] = field(default_factory=dict)  # container path -> host path (None: remove it)
    rebuild: bool = False
    restart: bool = False


def compute_triggers(service: str, develop, project_dir: str) -> list[Trigger]:
    """The service's develop.watch entries as triggers; a bad entry is one line naming it."""
    if not develop:
        return []
    if not isinstance(develop, dict) or not isinstance(develop.get("watch", []), list):
        raise InvalidArgument(f"services.{service}.develop: give a mapping with a 'watch' list")
    out = []
    for i, entry in enumerate(develop.get("watch") or ()):
        where = f"services.{service}.develop.watch[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: give a mapping with action and path")
        action, path = entry.get("action"), entry.get("path")
        if action not in ACTIONS:
            raise InvalidArgument(f"{where}.action: {action!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(path, str) or not path:
            raise InvalidArgument(f"{where}.path: give the file or directory to watch")
        target = entry.get("target") or ""
        if action in ("sync", "sync+restart"):
            if not isinstance(target, str) or not target.startswith("/"):
                raise InvalidArgument(f"{where}.target: a {action} trigger needs an absolute path in the container")
        ignore = entry.get("ignore") or []
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise InvalidArgument(f"{where}.ignore: give a list of patterns")
        absolute = path if path.startswith("/") else posixpath.normpath(posixpath.join(project_dir, path))
        out.append(Trigger(service, action, absolute, posixpath.normpath(target) if target else "", tuple(ignore)))
    return out


def dockerignore_matcher(text: str) -> Matcher:
    """A build context's .dockerignore text as the matcher `Ignore` takes."""
    return parse_dockerignore(text)


def _below(path: str, root: str) -> str | None:
    """`path` relative to `root` ("." for root itself), or None when it is not below."""
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


class Ignore:
    """Whether a changed host path is ignored for a trigger (see the module's docstring)."""

    def __init__(self, trigger: Trigger, context: str | None = None, dockerignore: Matcher | None = None):
        self.trigger, self.context, self.dockerignore = trigger, context, dockerignore
        self.own = Matcher(list(trigger.ignore)) if trigger.ignore else None

    def ignored(self, path: str) -> bool:
        rel_trigger = _below(path, self.trigger.path)
        rel = rel_trigger if rel_trigger not in (None, ".") else posixpath.basename(path)
        if _EPHEMERAL.excludes(rel) or _GIT.excludes(rel):
            return True
        if self.own is not None and rel_trigger not in (None, ".") and self.own.excludes(rel_trigger):
            return True
        if self.dockerignore is not None and self.context:
            in_context = _below(path, self.context)
            if in_context not in (None, ".") and self.dockerignore.excludes(in_context):
                return True
        return False


def plan_changes(triggers: list[Trigger], ignores: dict[Trigger, Ignore], changes: dict[str, bool]) -> dict[str, Plan]:
    """Per service, what `changes` (host path -> still exists) ask for. A rebuild makes a
    sync of the same service moot (the new image has the files)."""
    plans: dict[str, Plan] = {}
    for path, exists in sorted(changes.items()):
        for trig in triggers:
            rel = _below(path, trig.path)
            if rel is None or ignores[trig].ignored(path):
                continue
            plan = plans.setdefault(trig.service, Plan())
            if trig.action == "rebuild":
                plan.rebuild = True
            elif trig.action == "restart":
                plan.restart = True
            else:
                inside = trig.target if rel == "." else posixpath.join(trig.target, rel)
                plan.sync[inside] = path if exists else None
                if trig.action == "sync+restart":
                    plan.restart = True
    for plan in plans.values():
        if plan.rebuild:
            plan.sync.clear()
            plan.restart = False
    return plans
