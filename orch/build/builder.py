"""The build executor: a checked Dockerfile, a context and a store in; an image out.

The plan of a build:

1. Parse and check the Dockerfile (orch.build.dockerfile, dockerfile_checks), pick the target
   stage (`--target`, else the last) and the stages it needs (its FROM and `COPY --from`
   references, transitively); only those are built, in file order.
2. Each stage starts from a *state*: an OCI image config (with its rootfs diff IDs and
   history) and the layer blobs under it. Its id is the config's digest, so a state is what an
   image would be if it were tagged; ` ---> 1a2b3c4d5e6f` shows its short id as docker does.
3. Each instruction is a step from one state to the next. Metadata instructions change only
   the config and add an `empty_layer` history entry (orch.build.steps); RUN, COPY, ADD and a
   WORKDIR that must create its directory add one layer (orch.build.rootfs).
4. Before running a step, its cache key (orch.build.cache) is looked up: the parent state's
   id, the expanded instruction text, the digest of the sources it copies and, for RUN, the
   build arguments in scope. A hit whose layer blobs are still in the content store is reused
   (` ---> Using cache`); the timestamps in the cached config are the first build's, so every
   later key in the chain stays the same.
5. The target stage's final state goes into the image store with its tags.

Variables: ARGs before the first FROM are visible in FROM lines only, and inside a stage
after `ARG NAME` without a value; `--build-arg` overrides defaults; ENV wins over ARG; ARG
values are in RUN's environment but not in the image. Unused build arguments are reported as
docker does. The instructions that expand variables are buildkit's: ADD COPY ENV EXPOSE FROM
LABEL STOPSIGNAL USER VOLUME WORKDIR ARG; RUN, CMD and ENTRYPOINT are left to the shell.
"""

import copy
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from orch.build import cache as cachemod
from orch.build import context as ctx
from orch.build import rootfs, steps
from orch.build.dockerfile import Dockerfile, DockerfileError, Instruction, chomp_heredoc, parse, parse_heredoc
from orch.build.dockerfile_checks import Checked, Stage, check_instruction, check_platform, parse_flags, validate
from orch.build.shell import Lexer
from orch.errors import NotFound, OrchError, UserError
from orch.node.runtime.imageconfig import rfc3339
from orch.node.runtime.images import DEFAULT_PATH, Image, ImageStore, canonical_json


class BuildFailed(UserError):
    """A step of the build failed: the message names the file, line, step and why."""


class CacheMiss(Exception):
    """A cache-only build (Builder(cache_only=True)) reached a step it would have to run."""


@dataclass
class BuildRequest:
    context: Path
    dockerfile: Path | None = None  # default: CONTEXT/Dockerfile
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    # The RUN steps' network unless a step says otherwise (`RUN --network=`): "default" (the
    # build's namespace on the node's bridge), "none" or "host". BuildKit's entitlements in
    # `allow`: "network.host" lets a Dockerfile's `RUN --network=host` reach the host's network.
    network: str = "default"
    allow: tuple[str, ...] = ()


@dataclass
class State:
    config: dict  # the whole OCI image config
    layers: list[dict]  # layer descriptors {"digest", "mediaType"}, one per diff ID

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.config)).hexdigest()

    @property
    def inner(self) -> dict:
        return self.config.setdefault("config", {})

    def image(self) -> Image:
        return rootfs.image_value(self.config, self.layers)


PLATFORM_ARGS = {"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": "",
                 "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": ""}


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def scratch_config() -> dict:
    return {"architecture": "amd64", "os": "linux", "config": {"Env": [DEFAULT_PATH]}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def read_dockerfile(req: BuildRequest) -> Dockerfile:
    path = Path(req.dockerfile) if req.dockerfile else Path(req.context) / "Dockerfile"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no Dockerfile at {path}; give one with -f or put one in the build context") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; -f wants the Dockerfile itself") from None
    return parse(data, filename=path.name)


class Builder:
    """With `cache_only`, the build only looks steps up: the first step that would run raises
    CacheMiss, before anything is mounted or forked. The agent runs such a build in its own
    process (a fully cached rebuild needs no worker, so no interpreter start) and hands the
    build to a worker process when it misses. `network` is the rootfs.BuildNetwork the agent
    made for the "default" RUN steps of a worker's build, or None."""

    def __init__(self, store: ImageStore, out: Callable[[str], None] = print, *, cgroups=None, cache_only: bool = False,
                 network=None):
        self.store = store
        self.out = out
        self.cache = cachemod.BuildCache(store.root)
        self.cgroups = cgroups
        self.cache_only = cache_only
        self.network = network

    # -- the plan ------------------------------------------------------------------------------

    def build(self, req: BuildRequest) -> Image:
        # The store's collector deletes blobs and layers that no image references yet, which
        # is what a build's intermediate layers are until the end: hold the store's shared
        # writer lock for the whole build, so a concurrent `rmi` leaves them alone.
        with self.store._writing():
            return self._build(req)

    def _build(self, req: BuildRequest) -> Image:
        df = read_dockerfile(req)
        checked = validate(df)
        self.df, self.req = df, req
        self.lexer = Lexer(escape=df.escape)
        self.context = ctx.open_context(req.context)
        self.digests = cachemod.StatDigests(self.store.root, self.context.path)
        try:
            return self._build_checked(checked, req)
        finally:
            self.digests.save()  # also after a miss or a failure: what was hashed stays known

    def _build_checked(self, checked: Checked, req: BuildRequest) -> Image:
        self.used_args: set[str] = set()
        self.meta = self._meta_args(checked)
        target = checked.stage(req.target) if req.target else checked.stages[-1]
        needed = self._needed(checked, target)
        self.total = sum(1 + len(s.instructions) for s in checked.stages if s.index in needed)
        self.step = 0
        self.states: dict[int, State] = {}
        for stage in checked.stages:
            if stage.index in needed:
                self.states[stage.index] = self._build_stage(checked, stage)
        final = self.states[target.index]
        unused = sorted(set(req.build_args) - self.used_args)
        if unused:
            self.out(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        if req.labels:
            final = self._meta_step(final, "LABEL", " ".join(f"{k}={v}" for k, v in req.labels.items()),
                                    lambda inner: steps.set_labels(inner, list(req.labels.items())))
        image, notes = self.store.add_image(canonical_json(final.config), [(l["digest"], l["mediaType"]) for l in final.layers], req.tags)
        for note in notes:
            self.out(note)
        self.out(f"Successfully built {image.short_id}")
        for tag in req.tags:
            self.out(f"Successfully tagged {tag}")
        return image

    def _meta_args(self, checked: Checked) -> dict[str, str | None]:
        # buildkit's automatic platform arguments: usable in FROM, and in a stage after
        # `ARG TARGETARCH` (say) as any global ARG.
        values: dict[str, str | None] = dict(PLATFORM_ARGS)
        for ins in checked.meta_args:
            for word in ins.args:
                name, eq, default = word.partition("=")
                value = self._expand(ins, default, {k: v for k, v in values.items() if v is not None}) if eq else None
                if name in self.req.build_args:
                    value = self.req.build_args[name]
                    self.used_args.add(name)
                values[name] = value
        return values

    def _stage_ref(self, checked: Checked, name: str, before: int) -> Stage | None:
        for s in checked.stages[:before]:
            if s.name == name.lower() or str(s.index) == name:
                return s
        return None

    def _needed(self, checked: Checked, target: Stage) -> set[int]:
        env = {k: v for k, v in self.meta.items() if v is not None}
        need, todo = set(), [target]
        while todo:
            stage = todo.pop()
            if stage.index in need:
                continue
            need.add(stage.index)
            refs = [self._expand(stage.from_, stage.base, env)]
            for ins in stage.instructions:
                if ins.keyword == "COPY":
                    ref = parse_flags(ins).get("from")
                    if isinstance(ref, str):
                        refs.append(ref)
            for ref in refs:
                dep = self._stage_ref(checked, ref, stage.index)
                if dep is not None:
                    todo.append(dep)
        return need

    # -- helpers -------------------------------------------------------------------------------

    def _fail(self, ins: Instruction, message: str) -> BuildFailed:
        return BuildFailed(f"{self.df.filename}:{ins.line}: {message}")

    def _expand(self, ins: Instruction, word: str, env: dict) -> str:
        try:
            return self.lexer.process_word(word, env)
        except OrchError as err:
            raise self._fail(ins, str(err)) from None

    def _print_step(self, ins: Instruction) -> None:
        self.step += 1
        self.out(f"Step {self.step}/{self.total} : {ins.original.strip()}")

    def _now(self) -> str:
        sde = rootfs.layers.source_date_epoch()
        return rfc3339(float(sde) if sde is not None else time.time())

    def _next(self, state: State, created_by: str, *, inner: dict | None = None, layer: tuple[dict, str] | None = None) -> State:
        config = copy.deepcopy(state.config)
        if inner is not None:
            config["config"] = inner
        now = self._now()
        config["created"] = now
        entry = {"created": now, "created_by": created_by, "comment": "orch build"}
        if layer is None:
            entry["empty_layer"] = True
        config.setdefault("history", []).append(entry)
        layers = list(state.layers)
        if layer is not None:
            desc, diff_id = layer
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
            layers.append({"digest": desc["digest"], "mediaType": desc["mediaType"]})
        return State(config, layers)

    def _cached(self, key: str) -> State | None:
        if self.req.no_cache:
            return None
        entry = self.cache.get(key)
        if entry is None:
            return None
        if not all(self.store.content.has(l["digest"]) for l in entry["layers"]):
            self.cache.drop(key)  # an rmi collected a layer: build the step again
            return None
        return State(entry["config"], entry["layers"])

    def _step(self, state: State, text: str, execute: Callable[[], State], *, sources: str | None = None,
              build_args: dict | None = None) -> State:
        """Reuse the cached result of a step or execute it; print docker's progress lines."""
        key = cachemod.compute_cache_key(state.id, text, sources=sources, build_args=build_args)
        hit = self._cached(key)
        if hit is not None:
            self.out(" ---> Using cache")
            new = hit
        elif self.cache_only:
            raise CacheMiss(text)
        else:
            new = execute()
            self.cache.put(key, {"config": new.config, "layers": new.layers})
        self.out(f" ---> {short(new.id)}")
        return new

    def _meta_step(self, state: State, keyword: str, text: str, change: Callable[[dict], dict], *, history: str | None = None) -> State:
        """A step that changes only the config. `text` (unambiguous: JSON for lists) keys the
        cache; `history` is the created_by people read, when it is not the same."""
        full = steps.history_text(keyword, text)
        return self._step(state, full, lambda: self._next(state, history or full, inner=change(copy.deepcopy(state.inner))))

    # -- stages --------------------------------------------------------------------------------

    def _base(self, checked: Checked, stage: Stage) -> State:
        ins = stage.from_
        env = {k: v for k, v in self.meta.items() if v is not None}
        name = self._expand(ins, stage.base, env)
        platform = parse_flags(ins).get("platform")
        if isinstance(platform, str):
            try:
                check_platform(self._expand(ins, platform, env))
            except DockerfileError as err:
                raise self._fail(ins, str(err)) from None
        ref = self._stage_ref(checked, name, stage.index)
        if ref is not None:
            return copy.deepcopy(self.states[ref.index])
        if name.lower() == "scratch":
            return State(scratch_config(), [])
        try:
            image = self.store.resolve(name)
        except NotFound as err:
            raise self._fail(ins, f"FROM {name}: {err}") from None
        config = copy.deepcopy(image.config)
        config.setdefault("config", {})
        config.setdefault("history", [])
        return State(config, [{"digest": l["digest"], "mediaType": l.get("mediaType", "application/vnd.oci.image.layer.v1.tar")} for l in image.layers])

    def _build_stage(self, checked: Checked, stage: Stage) -> State:
        self._print_step(stage.from_)
        state = self._base(checked, stage)
        self.out(f" ---> {short(state.id)}")
        self.args: dict[str, str | None] = {}
        triggers = list(state.inner.get("OnBuild") or [])
        if triggers:
            state.inner["OnBuild"] = None  # triggers run once, in the image that builds FROM this one
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
            for text in triggers:
                try:
                    for ins in parse(text.encode(), filename="ONBUILD").instructions:
                        check_instruction(ins)
                        state = self._instruction(checked, stage, state, ins)
                except OrchError as err:
                    raise BuildFailed(f"{self.df.filename}:{stage.from_.line}: the base image's ONBUILD trigger '{text}' failed: {err}") from None
        for ins in stage.instructions:
            self._print_step(ins)
            state = self._instruction(checked, stage, state, ins)
        return state

    def _vars(self, state: State) -> dict[str, str]:
        """The variables an instruction expands with: stage ARGs, then ENV over them."""
        env = {k: v for k, v in self.args.items() if v is not None}
        env.update(steps.env_dict(state.inner))
        return env

    def _run_args(self, state: State) -> dict[str, str]:
        """Build arguments in RUN's environment: ARGs with a value that no ENV overrides."""
        env_names = set(steps.env_dict(state.inner))
        return {k: v for k, v in self.args.items() if v is not None and k not in env_names}

    # -- instructions --------------------------------------------------------------------------

    def _instruction(self, checked: Checked, stage: Stage, state: State, ins: Instruction) -> State:
        kw = ins.keyword
        vars_ = self._vars(state)
        word = lambda w: self._expand(ins, w, vars_)  # noqa: E731
        flags = parse_flags(ins)
        if kw == "ARG":
            declared = []
            for w in ins.args:
                name, eq, default = w.partition("=")
                value = word(default) if eq else None
                if not eq and name in self.meta:
                    value = self.meta[name]
                if name in self.req.build_args:
                    value = self.req.build_args[name]
                    self.used_args.add(name)
                self.args[name] = value
                declared.append((name, value))
            # An empty-layer history entry with the values in effect, as buildkit records it
            # (`ARG X=1`, or `ARG Y` for one without a value).
            history = "ARG " + " ".join(name if value is None else f"{name}={value}" for name, value in declared)
            return self._meta_step(state, "ARG", steps.json_args([list(d) for d in declared]), lambda i: i, history=history)
        if kw == "ENV":
            pairs = [(word(k), word(v)) for k, v in ins.pairs]
            return self._meta_step(state, "ENV", " ".join(f"{k}={v}" for k, v in pairs), lambda i: steps.set_env(i, pairs))
        if kw == "LABEL":
            pairs = [(word(k), word(v)) for k, v in ins.pairs]
            return self._meta_step(state, "LABEL", " ".join(f"{k}={v}" for k, v in pairs), lambda i: steps.set_labels(i, pairs))
        if kw == "MAINTAINER":
            text = steps.history_text("MAINTAINER", ins.args[0])

            def execute() -> State:
                new = self._next(state, text)
                new.config["author"] = ins.args[0]
                return new

            return self._step(state, text, execute)
        if kw == "EXPOSE":
            ports = [p for a in ins.args for p in word(a).split()]
            try:
                steps.add_ports({}, ports)
            except UserError as err:
                raise self._fail(ins, str(err)) from None
            return self._meta_step(state, "EXPOSE", " ".join(ports), lambda i: steps.add_ports(i, ports),
                                   history="EXPOSE " + steps.go_list(steps.port_list(ports)))
        if kw == "VOLUME":
            paths = [word(a) for a in ins.args]
            return self._meta_step(state, "VOLUME", steps.json_args(paths), lambda i: steps.add_volumes(i, paths),
                                   history="VOLUME " + steps.go_list(paths))
        if kw == "USER":
            user = word(ins.args[0])
            return self._meta_step(state, "USER", user, lambda i: steps.set_key(i, "User", user))
        if kw == "STOPSIGNAL":
            sig = word(ins.args[0])
            return self._meta_step(state, "STOPSIGNAL", sig, lambda i: steps.set_key(i, "StopSignal", sig))
        if kw == "SHELL":
            shell = list(ins.args)
            return self._meta_step(state, "SHELL", steps.json_args(shell), lambda i: steps.set_key(i, "Shell", shell),
                                   history="SHELL " + steps.go_list(shell))
        if kw == "CMD":
            argv = steps.command_words(list(ins.args), ins.json, state.inner)
            return self._meta_step(state, "CMD", steps.json_args(argv), lambda i: steps.set_key(i, "Cmd", argv),
                                   history="CMD " + steps.go_quoted_list(argv))
        if kw == "ENTRYPOINT":
            argv = steps.command_words(list(ins.args), ins.json, state.inner)
            return self._meta_step(state, "ENTRYPOINT", steps.json_args(argv), lambda i: steps.set_entrypoint(i, argv),
                                   history="ENTRYPOINT " + steps.go_quoted_list(argv))
        if kw == "HEALTHCHECK":
            check = steps.healthcheck({}, list(ins.args), flags, ins.json)["Healthcheck"]
            return self._meta_step(state, "HEALTHCHECK", ins.original.split(None, 1)[1],
                                   lambda i: steps.set_key(i, "Healthcheck", check), history=steps.healthcheck_history(check))
        if kw == "ONBUILD":
            trigger_text = ins.original.split(None, 1)[1].strip()
            return self._meta_step(state, "ONBUILD", trigger_text, lambda i: steps.add_onbuild(i, trigger_text))
        if kw == "WORKDIR":
            return self._workdir(state, ins, word(ins.args[0]))
        if kw == "RUN":
            return self._run(state, ins, flags)
        if kw in ("COPY", "ADD"):
            return self._copy(checked, stage, state, ins, flags, word)
        raise self._fail(ins, f"{kw} is not supported by orch build")

    def _workdir(self, state: State, ins: Instruction, path: str) -> State:
        workdir = steps.join_workdir(state.inner.get("WorkingDir") or "/", path)
        text = steps.history_text("WORKDIR", workdir)

        def execute() -> State:
            inner = steps.set_key(state.inner, "WorkingDir", workdir)
            if workdir == "/":
                return self._next(state, text, inner=inner)
            with rootfs.open_root(self.store, state.image()) as (root, key):
                if ctx._image_path(root, workdir).is_dir():
                    made = False
                else:
                    # The directory is missing: make it, as buildkit does, in a layer of its own.
                    ctx._mkdirs(root, workdir, ctx.Ownership())
                    made = True
            if not made:
                self.store.remove_snapshot(key)
                return self._next(state, text, inner=inner)
            desc, diff_id, _ = rootfs.commit_layer(self.store, key)
            return self._next(state, text, inner=inner, layer=(desc, diff_id))

        return self._step(state, text, execute)

    def _run(self, state: State, ins: Instruction, flags: dict) -> State:
        if flags.get("mount"):
            raise self._fail(ins, "RUN --mount is not supported by orch build yet; copy what the step needs with COPY")
        if flags.get("security") == "insecure":
            raise self._fail(ins, "RUN --security=insecure is not supported: build steps run with docker's default capabilities")
        network = flags.get("network") or "default"
        if network == "default":
            network = self.req.network
        elif network == "host" and self.req.network != "host" and "network.host" not in self.req.allow:
            # BuildKit's entitlement: a Dockerfile alone must not reach the host's loopback.
            raise self._fail(ins, "RUN --network=host needs the network.host entitlement; build with --allow network.host "
                                  "(or --network host) if this Dockerfile may use the host's network")
        if ins.heredocs and not ins.json:
            argv = self._heredoc_command(state, ins)
        else:
            argv = steps.command_words(list(ins.args), ins.json, state.inner)
        build_args = self._run_args(state)
        text = "RUN " + steps.json_args(argv) + (f" --network={network}" if network != "default" else "")
        created_by = steps.run_history(argv, self.args, steps.env_dict(state.inner))

        def execute() -> State:
            inner = state.inner
            env = [DEFAULT_PATH] if "PATH" not in steps.env_dict(inner) else []
            env += [f"{k}={v}" for k, v in build_args.items()] + list(inner.get("Env") or [])
            self.out(f" ---> Running in {short(hashlib.sha256(text.encode() + str(time.time()).encode()).hexdigest())}")
            try:
                key = rootfs.run(self.store, state.image(), argv, env=env, cwd=inner.get("WorkingDir") or "/",
                                 user=inner.get("User") or "", network=network, build_network=self.network, out=self.out,
                                 cgroups=self.cgroups)
            except rootfs.RunFailed as err:
                shown = ins.original.strip()
                if len(shown) > 80:
                    shown = shown[:77] + "..."
                detail = f"exit code {err.exit_code}" if str(err) == f"exit code {err.exit_code}" else f"{err} (exit code {err.exit_code})"
                raise self._fail(ins, f"step {self.step}/{self.total} {shown}: {detail}") from None
            desc, diff_id, _ = rootfs.commit_layer(self.store, key)
            return self._next(state, created_by, layer=(desc, diff_id))

        return self._step(state, text, execute, build_args=build_args)

    def _copy(self, checked: Checked, stage: Stage, state: State, ins: Instruction, flags: dict, word) -> State:
        kw = ins.keyword
        for unsupported in ("link", "parents", "exclude", "checksum", "keep-git-dir", "unpack"):
            if flags.get(unsupported):
                raise self._fail(ins, f"{kw} --{unsupported} is not supported by orch build yet")
        inline = None
        if ins.heredocs and not ins.json:
            inline = self._heredoc_files(state, ins)
            words = [a if parse_heredoc(a) else word(a) for a in ins.args]
        else:
            words = [word(a) for a in ins.args]
        srcs, dest = words[:-1], words[-1]
        if inline is not None:
            srcs = [parse_heredoc(w).name for w in srcs]
        what = f"{self.df.filename}:{ins.line}: {kw}"
        for s in srcs:
            if "://" in s or s.startswith("git@"):
                raise self._fail(ins, f"{kw} {s}: remote sources are not supported; download the file into the build context and COPY it")
        chown = flags.get("chown")
        chmod = flags.get("chmod")
        mode = None
        if isinstance(chmod, str):
            chmod = word(chmod)
            try:
                mode = int(chmod, 8)
                if not 0 <= mode <= 0o7777:
                    raise ValueError
            except ValueError:
                raise self._fail(ins, f"{kw} --chmod={chmod}: want an octal mode such as 0644 or 755") from None
        chown = word(chown) if isinstance(chown, str) else None
        src_from = flags.get("from")
        text = f"{kw} " + " ".join(f for f in ins.flags) + " " + steps.json_args(words)
        workdir = state.inner.get("WorkingDir") or "/"

        if isinstance(src_from, str):
            src_from = word(src_from)
            ref = self._stage_ref(checked, src_from, stage.index)
            if ref is not None:
                other = self.states[ref.index]
            else:
                try:
                    image = self.store.resolve(src_from)
                except NotFound as err:
                    raise self._fail(ins, f"{kw} --from={src_from}: no stage or image of that name ({err})") from None
                other = State(image.config, [{"digest": l["digest"], "mediaType": l.get("mediaType", "")} for l in image.layers])
            sources_digest = f"stage:{other.id}"
            source_state = other
        elif inline is not None:
            sources_digest = cachemod.compute_sources_digest(
                [cachemod.SourceEntry(name, "file", 0o644, 0, 0, content) for name, content in inline.items()])
            source_state = None
        else:
            try:
                found = ctx.resolve_sources(self.context, srcs, what=what)
            except ctx.ContextError as err:
                raise BuildFailed(str(err)) from None
            sources_digest = cachemod.compute_sources_digest(ctx.source_entries(self.context, found, self.digests))
            source_state = None

        def copy_into(src_root: ctx.SourceRoot) -> State:
            image = state.image()
            with rootfs.open_root(self.store, image) as (root, key):
                own = self._ownership(ins, root, chown, mode)
                try:
                    found_here = ctx.resolve_sources(src_root, srcs, what=what)
                    ctx.copy_sources(src_root, found_here, root, dest, workdir, own, what=what, extract=(kw == "ADD"))
                except ctx.ContextError as err:
                    raise BuildFailed(str(err)) from None
                except OSError as err:
                    where = f" {err.filename}" if err.filename else ""
                    shown = where.replace(str(root), "") if where else ""
                    raise BuildFailed(f"{what}: cannot write{shown} into the image: {err.strerror}") from None
            desc, diff_id, _ = rootfs.commit_layer(self.store, key)
            shown = [f"<<{s}" for s in srcs] if inline is not None else srcs
            return self._next(state, steps.copy_history(kw, {"chown": chown, "chmod": chmod}, shown, dest), layer=(desc, diff_id))

        def execute() -> State:
            if inline is not None:
                with tempfile.TemporaryDirectory(prefix="orch-heredoc-") as d:
                    for name, content in inline.items():
                        (Path(d) / name).write_text(content)
                        os.chmod(Path(d) / name, 0o644)
                    return copy_into(ctx.SourceRoot(Path(d), None, True))
            if source_state is None:
                return copy_into(self.context)
            with rootfs.open_root(self.store, source_state.image(), writable=False) as (other_root, _):
                return copy_into(ctx.SourceRoot(other_root, None, False))

        return self._step(state, text, execute, sources=sources_digest)

    def _heredoc_body(self, state: State, doc, *, expand: bool) -> str:
        content = chomp_heredoc(doc.content) if doc.chomp else doc.content
        if expand and doc.expand:
            lexer = Lexer(escape=self.df.escape, raw_quotes=True, raw_escapes=True)
            try:
                content = lexer.process_word(content, self._vars(state))
            except OrchError as err:
                raise BuildFailed(f"{self.df.filename}:{doc.name}: {err}") from None
        return content

    def _heredoc_command(self, state: State, ins: Instruction) -> list[str]:
        """RUN with heredocs, as buildkit runs them: a lone heredoc is the script the shell
        runs; heredocs after a command are handed to the shell with the command, which
        feeds them to it (`RUN cat <<EOF > /file`)."""
        shell = steps.shell_of(state.inner)
        line = ins.args[0].strip()
        if len(ins.heredocs) == 1 and parse_heredoc(line) is not None:
            script = self._heredoc_body(state, ins.heredocs[0], expand=False)
            if script.startswith("#!"):
                raise self._fail(ins, "RUN with a heredoc that starts with #! is not supported yet; COPY the script and RUN it")
            return shell + [script]
        return shell + [line + "\n" + "".join(doc.content + doc.name + "\n" for doc in ins.heredocs)]

    def _heredoc_files(self, state: State, ins: Instruction) -> dict[str, str]:
        """COPY <<NAME DEST: each source heredoc becomes a file NAME with its body."""
        files = {}
        docs = {doc.name: doc for doc in ins.heredocs}
        for arg in ins.args[:-1]:
            doc = parse_heredoc(arg)
            if doc is None:
                raise self._fail(ins, f"{ins.keyword} mixes heredocs and files; use one {ins.keyword} for each")
            files[doc.name] = self._heredoc_body(state, docs[doc.name], expand=True)
        return files

    def _ownership(self, ins: Instruction, root: Path, chown: str | None, mode: int | None) -> ctx.Ownership:
        if chown is None:
            return ctx.Ownership(None, None, mode)
        from orch.node.runtime.users import resolve_user

        def read(name: str) -> str | None:
            p = ctx._image_path(root, f"/etc/{name}")
            return p.read_text() if p.is_file() else None

        spec = chown if ":" in chown else chown
        try:
            user = resolve_user(spec, (), read("passwd"), read("group"))
        except OrchError as err:
            raise self._fail(ins, f"--chown={chown}: {err}") from None
        return ctx.Ownership(user.uid, user.gid, mode)
