"""`load_project`: from stack files on disk to a validated, normalized `Project`.

The steps, in compose's order:
1. find the files (`-f`, COMPOSE_FILE, or compose.yaml & co. in the working directory);
2. gather the variables: the OS environment wins over `--env-file`s (or, without them, the
   project directory's `.env`), as compose does;
3. per file: parse with positions, interpolate, resolve `extends`;
4. merge the files (13-merge.md) and validate the result against the models;
5. load every `include` as its own project (its own directory and `.env`) and add its
   services and resources, refusing a name defined twice;
6. apply profiles, check references between services and resources, read `env_file`s, name
   networks and volumes after the project, add the default network.
Every problem of every step is collected; one `StackError` carries all of them.
"""

import os
import re
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
from orch.spec.yamltree import Map, Seq, load_yaml, to_plain

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def find_stack_files(directory: Path) -> list[Path]:
    """compose.yaml (or its older names) in `directory` and its `.override` file, if any."""
    for name in DEFAULT_FILES:
        path = directory / name
        if path.is_file():
            stem, suffix = name.rsplit(".", 1)
            override = directory / f"{stem}.override.{suffix}"
            return [path, override] if override.is_file() else [path]
    raise StackError(
        [f"no stack file in {directory}: expected one of {', '.join(DEFAULT_FILES)}; name one with -f FILE"]
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
    files: list[Path] | None = None,
    *,
    project_dir: Path | None = None,
    env_files: list[Path] | None = None,
    profiles: list[str] | None = None,
    project_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Project:
    environ = dict(os.environ if environ is None else environ)
    base = Path(project_dir).absolute() if project_dir else Path.cwd()
    if files:
        files = [Path(f).absolute() for f in files]  # relative to the working directory, as compose has it
    elif environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep)
        files = [base / f for f in environ["COMPOSE_FILE"].split(sep) if f]
    else:
        files = find_stack_files(base)
    project_dir = Path(project_dir).absolute() if project_dir else files[0].parent

    problems = Problems()
    variables = _variables(environ, project_dir, env_files, problems)
    stack = _load_stack(files, project_dir, variables, problems, chain=())
    if stack is None:
        problems.check()
    name = _project_name(project_name, variables, stack, project_dir, problems)
    if profiles is None:
        profiles = [p for p in variables.get("COMPOSE_PROFILES", "").split(",") if p]
    project = finalize(stack, name, profiles, variables, problems, files)
    problems.check()
    return project


def _variables(environ: dict, project_dir: Path, env_files: list[Path] | None, problems: Problems) -> dict[str, str]:
    """The variables for interpolation: the OS environment over the env files."""
    values: dict[str, str] = {}
    paths = [Path(p) for p in env_files] if env_files else [project_dir / ".env"]
    for path in paths:
        if not env_files and not path.is_file():
            continue
        try:
            for key, value in read_env_file(path, lambda n: environ[n] if n in environ else values.get(n)).items():
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


def _load_file(path: Path, variables: dict, problems: Problems) -> Map | None:
    """One file: parsed, interpolated and with its extends resolved."""
    problems.files.append(str(path))
    try:
        tree = load_yaml(path)
    except StackError as err:
        problems.extend(err)
        return None
    unset: set[str] = set()
    interpolate_tree(tree, variables.get, problems, unset)

    def load_other(other: Path) -> Map:
        other_tree = load_yaml(other)
        interpolate_tree(other_tree, variables.get, problems, set())
        return other_tree

    resolve_extends(tree, path, load_other, problems)
    for name in sorted(unset):
        problems.warnings.append(f'the "{name}" variable is not set; defaulting to a blank string')
    return tree


def _load_stack(files: list[Path], project_dir: Path, variables: dict, problems: Problems, chain: tuple) -> _Stack | None:
    trees = [tree for tree in (_load_file(path, variables, problems) for path in files) if tree is not None]
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
        if any(str(p) in chain for p in paths):
            problems.add(mark, where, f"include cycle: {' -> '.join(chain)} -> {paths[0]}")
            continue
        sub_dir = Path(syntax.resolve_path(entry["project_directory"], project_dir)) if isinstance(entry.get("project_directory"), str) else paths[0].parent
        # The included project's .env gives defaults; the including project's variables win.
        sub_vars = {**_variables({}, sub_dir, env_files, problems), **variables}
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
