"""What a Dockerfile means, checked before anything is built. Pure.

The parser (orch.build.dockerfile) accepts anything buildkit's parser accepts, including
unknown instructions and flags. `validate` applies the rules that buildkit's instruction layer
(`frontend/dockerfile/instructions/parse.go`) applies next, and groups the instructions into
stages for the builder:

- every instruction is known (`unknown instruction 'RUNN'; did you mean 'RUN'?`); only ARG may
  come before the first FROM;
- flags are the instruction's own (`--from` for COPY, `--mount` for RUN, ...), written
  `--name=value` (or `--name` for yes/no flags), each once except the repeatable ones;
- argument counts (`WORKDIR requires exactly one argument`), FROM's `AS name`, unique stage
  names, HEALTHCHECK's type and durations, ONBUILD's triggers, SHELL in JSON form;
- `FROM --platform` must be linux/amd64, the only platform orch builds (a value with variables
  is checked by the builder after expansion, with `check_platform`);
- RUN `--mount` values are parsed into fields and their type checked (bind, cache, tmpfs,
  secret, ssh); whether orch supports a type is the builder's decision.

Every error is one line, `FILE:LINE: message`.
"""

import difflib
import re
from dataclasses import dataclass

from orch.build.dockerfile import KNOWN, Dockerfile, DockerfileError, Instruction, parse_heredoc

PLATFORM = "linux/amd64"

STRING, BOOL, STRINGS = "string", "bool", "strings"

# The flags each instruction takes, as buildkit defines them. STRINGS flags may repeat.
FLAGS: dict[str, dict[str, str]] = {
    "ADD": {"chown": STRING, "chmod": STRING, "link": BOOL, "keep-git-dir": BOOL, "checksum": STRING, "unpack": BOOL, "exclude": STRINGS},
    "COPY": {"chown": STRING, "chmod": STRING, "from": STRING, "link": BOOL, "exclude": STRINGS, "parents": BOOL},
    "FROM": {"platform": STRING},
    "RUN": {"mount": STRINGS, "network": STRING, "security": STRING, "device": STRINGS},
    "HEALTHCHECK": {"interval": STRING, "timeout": STRING, "start-period": STRING, "start-interval": STRING, "retries": STRING},
}

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("sandbox", "insecure")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None  # the `AS` name, lower-cased
    base: str  # the image (or earlier stage) it starts from, not yet expanded
    platform: str | None
    from_: Instruction
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Checked:
    meta_args: tuple[Instruction, ...]  # the ARGs before the first FROM
    stages: tuple[Stage, ...]

    def stage(self, target: str) -> Stage:
        """The stage named `target` (for `--target`)."""
        for stage in self.stages:
            if stage.name == target.lower():
                return stage
        names = ", ".join(s.name for s in self.stages if s.name) or "none"
        raise DockerfileError(f"target stage '{target}' could not be found; the stages are: {names}")


class _Problem(DockerfileError):
    """A problem without its location: validate adds the file and line. Raised as is by the
    public helpers (parse_flags, parse_mount, check_platform), whose callers know the line."""


def validate(dockerfile: Dockerfile) -> Checked:
    """Check `dockerfile` and group it into stages. Raise DockerfileError on the first
    problem, naming the file and line."""
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    for ins in dockerfile.instructions:
        try:
            check_instruction(ins)
            if ins.keyword == "FROM":
                if stages:
                    stages[-1] = _with_instructions(stages[-1], current)
                current = []
                stages.append(_stage(len(stages), ins, stages))
            elif not stages:
                if ins.keyword != "ARG":
                    raise _Problem(f"{ins.keyword} comes before the first FROM; only ARG may")
                meta_args.append(ins)
            else:
                current.append(ins)
        except _Problem as err:
            raise DockerfileError(f"{dockerfile.filename}:{ins.line}: {err}") from None
    if not stages:
        raise DockerfileError(f"{dockerfile.filename}: no FROM instruction; a Dockerfile must start a stage with FROM")
    stages[-1] = _with_instructions(stages[-1], current)
    return Checked(tuple(meta_args), tuple(stages))


def _with_instructions(stage: Stage, instructions: list[Instruction]) -> Stage:
    return Stage(stage.index, stage.name, stage.base, stage.platform, stage.from_, tuple(instructions))


def _stage(index: int, ins: Instruction, earlier: list[Stage]) -> Stage:
    flags = parse_flags(ins)
    name = None
    if len(ins.args) == 3 and ins.args[1].lower() == "as":
        name = ins.args[2].lower()
        if not _STAGE_NAME.match(name):
            raise _Problem(f"invalid name for build stage: '{ins.args[2]}', name can't start with a number or contain symbols")
        if any(stage.name == name for stage in earlier):
            raise _Problem(f"duplicate stage name '{name}'")
    elif len(ins.args) != 1:
        raise _Problem("FROM requires either one or three arguments (FROM image [AS name])")
    platform = flags.get("platform")
    if platform is not None and "$" not in platform:
        check_platform(platform)
    return Stage(index, name, ins.args[0], platform, ins, ())


def check_platform(platform: str) -> None:
    """Refuse any platform but linux/amd64 (after the builder expanded the variables)."""
    parts = platform.lower().split("/")
    if parts[:2] != ["linux", "amd64"] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("v1", "")):
        raise _Problem(f"platform '{platform}' is not supported: orch builds {PLATFORM} images only")


def check_instruction(ins: Instruction) -> None:
    """The checks of one instruction, without its line (validate adds it)."""
    keyword = ins.keyword
    if ins.command.lower() not in KNOWN:
        close = difflib.get_close_matches(keyword, [k.upper() for k in KNOWN], n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise _Problem(f"unknown instruction '{ins.command}'{hint}")
    parse_flags(ins)
    checker = _CHECKS.get(keyword)
    if checker:
        checker(ins)


def parse_flags(ins: Instruction) -> dict[str, str | bool | list[str]]:
    """The instruction's flags by name: strings, True/False for yes/no flags, lists for the
    repeatable ones. Raise on a flag the instruction does not take."""
    allowed = FLAGS.get(ins.keyword, {})
    if ins.keyword == "HEALTHCHECK" and ins.args[:1] and ins.args[0].upper() == "NONE":
        allowed = {}
    values: dict[str, str | bool | list[str]] = {}
    for flag in ins.flags:
        if flag == "--":
            break
        if not flag.startswith("--"):
            raise _Problem(f"flag '{flag}' of {ins.keyword} should start with --")
        name, has_value, value = flag[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            if close:
                hint = f"; did you mean '--{close[0]}'?"
            else:
                hint = f"; {ins.keyword} takes " + (", ".join(f"--{f}" for f in allowed) if allowed else "no flags")
            raise _Problem(f"unknown flag '--{name}' for {ins.keyword}{hint}")
        if name in values and kind != STRINGS:
            raise _Problem(f"duplicate flag specified: --{name}")
        if kind == BOOL:
            if has_value and value == "":
                raise _Problem(f"missing a value on flag: --{name}")
            if value.lower() not in ("", "true", "false"):
                raise _Problem(f"expecting boolean value for flag --{name}, not: {value}")
            values[name] = value.lower() != "false"
        elif not has_value:
            raise _Problem(f"missing a value on flag: --{name}")
        elif kind == STRINGS:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values


# Per-instruction checks.


def _exactly_one(ins):
    if len(ins.args) != 1:
        raise _Problem(f"{ins.keyword} requires exactly one argument")


def _at_least_one(ins):
    if not ins.args:
        raise _Problem(f"{ins.keyword} requires at least one argument")


def _key_values(ins):
    _at_least_one(ins)
    for key, _ in ins.pairs:
        if not key:
            raise _Problem(f"{ins.keyword} names can not be blank")


def _arg(ins):
    _at_least_one(ins)
    for word in ins.args:
        if word.startswith("="):
            raise _Problem("ARG names can not be blank")


def _sources_and_dest(ins):
    if len(ins.args) < 2:
        raise _Problem(f"{ins.keyword} requires at least two arguments (sources and a destination), but only one was given")
    if not ins.json and parse_heredoc(ins.args[-1]) is not None:
        raise _Problem(f"{ins.keyword} cannot accept a heredoc as a destination")


def _run(ins):
    flags = parse_flags(ins)
    for value in flags.get("mount", []):
        parse_mount(value)
    network = flags.get("network")
    if network is not None and network not in NETWORK_MODES:
        raise _Problem(f"invalid network mode '{network}'; use one of: {', '.join(NETWORK_MODES)}")
    security = flags.get("security")
    if security is not None and security not in SECURITY_MODES:
        raise _Problem(f"security mode '{security}' is not supported; use one of: {', '.join(SECURITY_MODES)}")


def _volume(ins):
    _at_least_one(ins)
    if any(not arg.strip() for arg in ins.args):
        raise _Problem("VOLUME specified can not be an empty string")


def _shell(ins):
    if not ins.json:
        raise _Problem('SHELL requires the arguments to be in JSON form, for example SHELL ["/bin/sh", "-c"]')
    _at_least_one(ins)


def _onbuild(ins):
    if ins.child is None:
        raise _Problem("ONBUILD requires at least one argument")
    trigger = ins.child.keyword
    if trigger == "ONBUILD":
        raise _Problem("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("FROM", "MAINTAINER"):
        raise _Problem(f"{trigger} isn't allowed as an ONBUILD trigger")
    check_instruction(ins.child)


def _healthcheck(ins):
    _at_least_one(ins)
    kind = ins.args[0].upper()
    if kind == "NONE":
        if len(ins.args) > 1:
            raise _Problem("HEALTHCHECK NONE takes no arguments")
        return
    if kind != "CMD":
        raise _Problem(f"unknown type '{ins.args[0]}' in HEALTHCHECK (try CMD)")
    if len(ins.args) < 2:
        raise _Problem("missing command after HEALTHCHECK CMD")
    flags = parse_flags(ins)
    for name in ("interval", "timeout", "start-period", "start-interval"):
        if name in flags:
            seconds = parse_duration(flags[name], f"--{name}")
            if 0 < seconds < 0.001:
                raise _Problem(f"--{name} cannot be less than 1ms")
    if "retries" in flags:
        try:
            retries = int(flags["retries"])
        except ValueError:
            raise _Problem(f"--retries must be a whole number, not '{flags['retries']}'") from None
        if retries < 0:
            raise _Problem(f"--retries cannot be negative ({retries})")


_CHECKS = {
    "ADD": _sources_and_dest,
    "ARG": _arg,
    "COPY": _sources_and_dest,
    "ENV": _key_values,
    "EXPOSE": _at_least_one,
    "HEALTHCHECK": _healthcheck,
    "LABEL": _key_values,
    "MAINTAINER": _exactly_one,
    "ONBUILD": _onbuild,
    "RUN": _run,
    "SHELL": _shell,
    "STOPSIGNAL": _exactly_one,
    "USER": _exactly_one,
    "VOLUME": _volume,
    "WORKDIR": _exactly_one,
}


_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """A Go duration ("1m30s", "500ms", "0") in seconds."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match or match.group(1) in ("", "."):
            raise _Problem(f"invalid duration '{text}' for {what}; write it like 30s, 1m30s or 500ms")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not body:
        raise _Problem(f"invalid duration '{text}' for {what}; write it like 30s, 1m30s or 500ms")
    return -total if text.startswith("-") else total


def parse_mount(value: str) -> dict[str, str]:
    """A RUN --mount value as fields: `type=cache,target=/root/.cache,sharing=locked` ->
    {"type": "cache", "target": ..., "sharing": ...}. The type defaults to bind; `ro` and
    similar bare words become "true"; aliases (dst, destination, src) are normalized."""
    fields: dict[str, str] = {"type": "bind"}
    for part in _csv_fields(value):
        key, has_value, val = part.partition("=")
        key = key.strip().lower()
        if not has_value:
            if key in ("readonly", "ro", "readwrite", "rw", "required"):
                val = "true"
            else:
                raise _Problem(f"invalid field '{part}' in --mount: it must be a key=value pair")
        key = {"dst": "target", "destination": "target", "src": "source", "ro": "readonly", "rw": "readwrite"}.get(key, key)
        fields[key] = val
    if fields["type"] not in MOUNT_TYPES:
        close = difflib.get_close_matches(fields["type"], MOUNT_TYPES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; use one of: {', '.join(MOUNT_TYPES)}"
        raise _Problem(f"unsupported mount type '{fields['type']}'{hint}")
    if fields["type"] in ("bind", "cache", "tmpfs") and "target" not in fields:
        raise _Problem(f"--mount={value}: a {fields['type']} mount needs a target")
    return fields


def _csv_fields(value: str) -> list[str]:
    # buildkit reads the value as one CSV record: fields may be quoted to hold commas.
    import csv

    try:
        return next(csv.reader([value]), [])
    except csv.Error as err:
        raise _Problem(f"invalid --mount value '{value}': {err}") from None
