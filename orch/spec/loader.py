"""`load_project`: from stack files on disk to a validated, normalized `Project`.

The steps, in compose's order:
1. find the files: `-f` (`-` is standard input), else COMPOSE_FILE, else compose.yaml & co.
   in the working directory or the nearest parent that has one;
2. gather the variables: the OS environment wins over `--env-file`s (or, without them, the
   `.env` of the directory known before the files are found, then the project directory's
   `.env`), as compose does; COMPOSE_FILE, COMPOSE_PROFILES and COMPOSE_PROJECT_NAME may come
   from any of them;
3. per file: parse with positions, interpolate, resolve `extends`;
4. merge the files (13-merge.md) and validate the result against the models;
5. load every `include` as its own project (its own directory and `.env`) and add its
   services and resources, refusing a name defined twice;
6. apply profiles, check references between services and resources and that the services'
   dependencies make no cycle, read `env_file`s (a missing one fails only the commands that
   touch its service, when the caller asks for that), name networks and volumes after the
   project, add the default network.
Every problem of every step is collected; one `StackError` carries all of them.
"""

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from orch.spec import syntax
from orch.spec.dotenv import read_env_file
from orch.spec.errors import Problems, StackError, suggest
from orch.spec.extends import resolve_extends
from orch.spec.finalize import finalize
from orch.spec.interpolate import interpolate_tree
from orch.spec.merge import merge_files
from orch.spec.models import Service
from orch.spec.project import Project, StackFile
from orch.spec.validate import report_validation
from orch.spec.yamltree import Map, Seq, load_yaml, load_yaml_text, to_plain

# compose-go's names and order (cli/options.go: DefaultFileNames, DefaultOverrideFileNames).
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml", "docker-compose.override.yaml")
STDIN = "-"  # `-f -`: the stack file comes from standard input
STDIN_NAME = "<stdin>"  # how its marks name it
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def find_stack_files(directory: Path, warnings: list[str] | None = None) -> list[Path]:
    """compose.yaml (or its older names) in `directory` or the nearest parent that has one,
    and the override file beside it, as compose's WithDefaultConfigPath looks for them. When
    one directory holds several names, the first in compose's order wins, with its warning."""
    for folder in (directory, *directory.parents):
        found = [folder / name for name in DEFAULT_FILES if (folder / name).is_file()]
        if not found:
            continue
        overrides = [folder / name for name in OVERRIDE_FILES if (folder / name).is_file()]
        for kind, names in (("config", found), ("override", overrides)):
            if len(names) > 1 and warnings is not None:
                warnings.append(f"found multiple {kind} files with supported names: {', '.join(map(str, names))}; using {names[0]}")
        return found[:1] + overrides[:1]
    raise StackError(
        [f"no stack file in {directory} or its parents: expected one of {', '.join(DEFAULT_FILES)}; name one with -f FILE"]
    )


def normalize_project_name(name: str) -> str:
    """A directory name as compose turns it into a project name: lower case, [a-z0-9_-]."""
    name = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return name.lstrip("_-")


class _Stack:
    """One project's stack before profiles and naming: the model and where its parts came from."""

    def __init__(self, model: StackFile, tree: Map, project_dir: Path):
        self.model = model
        self.tree = tree
        self.project_dir = project_dir
        # service name -> its raw tree, for the marks of later errors (included services too).
        services = tree.get("services")
        self.raw_services: dict[str, Map] = {}
        if isinstance(services, Map):
            for name, raw in services.items():
                self.raw_services[name] = raw if isinstance(raw, Map) else Map(mark=services.key_marks.get(name))
        # Services that failed validation: references to them are not reported again.
        self.invalid: set[str] = set()


def load_project(
    files: list[Path | str] | None = None,
    *,
    project_dir: Path | None = None,
    env_files: list[Path] | None = None,
    profiles: list[str] | None = None,
    project_name: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    lazy_env_files: bool = False,
) -> Project:
    """The project that the options select, as `docker compose` finds and reads it.

    `files` relative to `cwd` (default: the working directory); "-" is standard input (or the
    `stdin` text). With `lazy_env_files`, a service's missing or broken `env_file` is not an
    error of the load but kept in `Project.env_problems`, for the commands that touch the
    service to raise (`Project.require_env`)."""
    environ = dict(os.environ if environ is None else environ)
    cwd = Path(cwd).absolute() if cwd else Path.cwd()
    explicit_dir = cwd / project_dir if project_dir else None
    problems = Problems()
    if not env_files and environ.get("COMPOSE_ENV_FILES"):
        env_files = [Path(f) for f in environ["COMPOSE_ENV_FILES"].split(",") if f]  # --env-file's default
    env_files = [cwd / f for f in env_files] if env_files else None
    default_env = not env_files and environ.get("COMPOSE_DISABLE_ENV_FILE", "").lower() not in ("1", "true")
    paths = [_absolute(f, cwd) for f in files or ()]

    # compose's order (docker/compose cmd/compose/compose.go, toProjectOptions): the .env of
    # the directory known so far (--project-directory, the first -f file's, or the working
    # directory) may name COMPOSE_FILE; without files, compose.yaml is looked for from the
    # working directory up; then the project directory's .env fills in what is still unset.
    # The OS environment wins over both, and the first .env over the second.
    first_dir = explicit_dir or _first_dir(paths) or cwd
    variables = _variables(environ, env_files or ([first_dir / ".env"] if default_env else []), problems, optional=not env_files)
    if not paths and variables.get("COMPOSE_FILE"):
        separator = variables.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        paths = [_absolute(f, cwd) for f in variables["COMPOSE_FILE"].split(separator) if f]
    if not paths:
        paths = find_stack_files(explicit_dir or cwd, problems.warnings)
    project_dir = explicit_dir or _first_dir(paths) or cwd
    if default_env and project_dir != first_dir:
        variables = {**_variables({}, [project_dir / ".env"], problems, optional=True, lookup=variables), **variables}

    text = None
    if STDIN in paths:
        text = sys.stdin.read() if stdin is None else stdin
    stack = _load_stack(paths, project_dir, variables, problems, chain=(), stdin=text)
    if stack is None:
        problems.check()
    name = _project_name(project_name, variables, stack, project_dir, problems)
    if profiles is None:
        profiles = [p.strip() for p in variables.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
    project = finalize(stack, name, profiles, variables, problems, [p if p == STDIN else Path(p) for p in paths])
    if not lazy_env_files:
        for lines in project.env_problems.values():
            problems.lines.extend(lines)
    problems.check()
    return project


def _absolute(path: Path | str, cwd: Path) -> Path | str:
    return STDIN if str(path) == STDIN else cwd / path


def _first_dir(paths: list) -> Path | None:
    """The directory of the first file that is not standard input (compose's GetWorkingDir)."""
    return next((Path(p).parent for p in paths if p != STDIN), None)


def _variables(environ: dict, paths: list[Path], problems: Problems, *, optional: bool, lookup: dict | None = None) -> dict[str, str]:
    """The variables for interpolation: `environ` over the env files (a later file's value
    over an earlier one's). An `optional` file (the default .env) may be missing."""
    values: dict[str, str] = {}
    outer = lookup if lookup is not None else environ

    def chained(n: str) -> str | None:
        return outer[n] if n in outer else values.get(n)

    for path in paths:
        if optional and not path.is_file():
            continue
        try:
            for key, value in read_env_file(path, chained).items():
                if value is not None:
                    values[key] = value
        except StackError as err:
            problems.extend(err)
    values.update(environ)
    return values


def _project_name(explicit: str | None, variables: dict, stack: "_Stack", project_dir: Path, problems: Problems) -> str:
    """-p, then COMPOSE_PROJECT_NAME, then the top-level `name:`, then the directory's name."""
    sources = (("-p", explicit), ("COMPOSE_PROJECT_NAME", variables.get("COMPOSE_PROJECT_NAME")), ("name", stack.model.name))
    for source, value in sources:
        if value:
            if not _PROJECT_NAME.match(value):
                mark = stack.tree.mark_of("name") if source == "name" else None
                path = ("name",) if source == "name" else ()
                problems.add(mark, path, f"invalid project name {value!r} (from {source}): use lower-case letters, digits, '-' and '_', starting with a letter or digit")
            return value
    name = normalize_project_name(project_dir.name)
    if not name:
        problems.add(None, (), f"cannot make a project name of the directory {project_dir.name!r}; set one with -p NAME or 'name:'")
    return name


def _load_file(path: Path | str, variables: dict, problems: Problems, project_dir: Path, stdin: str | None = None) -> Map | None:
    """One file: parsed, interpolated and with its extends resolved."""
    problems.files.append(STDIN_NAME if path == STDIN else str(path))
    try:
        tree = load_yaml_text(stdin or "", STDIN_NAME) if path == STDIN else load_yaml(path)
    except StackError as err:
        problems.extend(err)
        return None
    unset: set[str] = set()
    interpolate_tree(tree, variables.get, problems, unset)

    def load_other(other: Path) -> Map:
        other_tree = load_yaml(other)
        interpolate_tree(other_tree, variables.get, problems, set())
        return other_tree

    # A file from standard input names the files it extends from the project directory.
    resolve_extends(tree, project_dir / STDIN_NAME if path == STDIN else path, load_other, problems)
    for name in sorted(unset):
        problems.warnings.append(f'the "{name}" variable is not set; defaulting to a blank string')
    return tree


def _load_stack(files: list, project_dir: Path, variables: dict, problems: Problems, chain: tuple, stdin: str | None = None) -> _Stack | None:
    trees = [tree for tree in (_load_file(path, variables, problems, project_dir, stdin) for path in files) if tree is not None]
    if len(trees) != len(files):
        return None
    merged = merge_files(trees)
    if "version" in merged:
        problems.warnings.append("the top-level 'version' is obsolete and ignored; remove it")
    invalid: set[str] = set()
    model = _validate(merged, project_dir, problems, invalid)
    stack = _Stack(model, merged, project_dir)
    stack.invalid = invalid
    _include(stack, merged.get("include"), project_dir, variables, problems, chain + tuple(str(f) for f in files))
    return stack


_SERVICE_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


def _validate(tree: Map, project_dir: Path, problems: Problems, invalid: set[str]) -> StackFile:
    """The merged tree as a StackFile. Each service is validated on its own, so the problems
    of every service are reported, and the services that are valid still get their
    references checked (a project with problems is never returned, though)."""
    context = {"project_dir": project_dir}
    top = {key: to_plain(value) for key, value in tree.items() if key != "services"}
    try:
        model = StackFile.model_validate(top, context=context)
    except ValidationError as err:
        report_validation(err, tree, StackFile, problems)
        model = StackFile()
    services = tree.get("services")
    if services is None:
        return model
    if not isinstance(services, Map):
        problems.add(tree.mark_of("services"), ("services",), "expected a mapping of service names to services")
        return model
    for name, raw in services.items():
        if not _SERVICE_NAME.match(name):
            problems.add(services.key_marks.get(name), ("services", name), "invalid service name; use letters, digits, '.', '_' and '-'")
            invalid.add(name)
            continue
        data = {} if raw is None else to_plain(raw)
        try:
            model.services[name] = Service.model_validate(data, context=context)
        except ValidationError as err:
            report_validation(err, tree, Service, problems, prefix=("services", name))
            invalid.add(name)
            # Without the keys that failed, the rest of the service can still have its
            # references checked, so those problems are reported in the same run.
            bad = {error["loc"][0] for error in err.errors() if error["loc"]}
            if isinstance(data, dict):
                try:
                    model.services[name] = Service.model_validate({k: v for k, v in data.items() if k not in bad}, context=context)
                except ValidationError:
                    pass
    return model


def _include(stack: _Stack, entries, project_dir: Path, variables: dict, problems: Problems, chain: tuple) -> None:
    """Load each `include` as its own project and add its services and resources."""
    if entries is None:
        return
    tree = stack.tree
    if not isinstance(entries, Seq):
        problems.add(tree.mark_of("include"), ("include",), "expected a list of files or of mappings with 'path'")
        return
    for index, entry in enumerate(entries):
        where = ("include", index)
        mark = entries.mark_of(index)
        if isinstance(entry, str):
            entry = Map({"path": entry}, mark=mark)
        if not isinstance(entry, Map) or "path" not in entry:
            problems.add(mark, where, "expected a file path or a mapping with 'path' (and optionally project_directory, env_file)")
            continue
        unknown = [k for k in entry if k not in ("path", "project_directory", "env_file")]
        if unknown:
            problems.add(entry.mark_of(unknown[0]), where, f"unknown key '{unknown[0]}'{suggest(unknown[0], ['path', 'project_directory', 'env_file'])}")
            continue
        try:
            paths = [Path(syntax.resolve_path(p, project_dir)) for p in syntax.string_list(entry["path"])]
            env_files = [Path(syntax.resolve_path(p, project_dir)) for p in syntax.string_list(entry["env_file"])] if entry.get("env_file") else None
        except ValueError as err:
            problems.add(mark, where, str(err))
            continue
        missing = [
            (key, i, path)
            for key, found in (("path", paths), ("env_file", env_files or []))
            for i, path in enumerate(found)
            if not path.exists()
        ]
        for key, i, path in missing:
            # The include entry's own line and column, so the user finds which include it is.
            value = entry.get(key)
            at = value.mark_of(i) if isinstance(value, Seq) else entry.mark_of(key) or mark
            kind = "included file" if key == "path" else "env file"
            problems.add(at, where + ((key, i) if isinstance(value, Seq) else (key,)), f"{kind} not found: {path}")
        if missing:
            continue
        if any(str(p) in chain for p in paths):
            problems.add(mark, where, f"include cycle: {' -> '.join(chain)} -> {paths[0]}")
            continue
        sub_dir = Path(syntax.resolve_path(entry["project_directory"], project_dir)) if isinstance(entry.get("project_directory"), str) else paths[0].parent
        # The included project's .env gives defaults; the including project's variables win.
        sub_vars = {**_variables({}, env_files or [sub_dir / ".env"], problems, optional=not env_files), **variables}
        before = len(problems.lines)
        sub = _load_stack(paths, sub_dir, sub_vars, problems, chain)
        if sub is None:
            if len(problems.lines) == before:
                problems.add(mark, where, f"cannot include {paths[0]}")
            continue
        _add_included(stack, sub, mark, where, problems)


def _add_included(stack: _Stack, sub: _Stack, mark, where: tuple, problems: Problems) -> None:
    for section in ("services", "networks", "volumes", "secrets", "configs"):
        mine, theirs = getattr(stack.model, section), getattr(sub.model, section)
        for name, value in theirs.items():
            if name in mine and mine[name] != value:
                problems.add(mark, where, f"{section}.{name} is defined both here and in the included {sub.project_dir}; rename one")
                continue
            mine[name] = value
            if section == "services":
                stack.raw_services[name] = sub.raw_services.get(name, Map())
    stack.invalid |= sub.invalid
