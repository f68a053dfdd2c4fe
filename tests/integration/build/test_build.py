"""Builds on real containers and overlays: the founding notes' hello image, the cache,
multi-stage, .dockerignore, the context's walls, reproducible layers."""

import json
import os
import tarfile

import pytest

from orch.build.builder import BuildFailed, Builder, BuildRequest
from orch.node.runtime.imageconfig import history_json
from orch.errors import UserError

from .conftest import run_image

pytestmark = pytest.mark.privileged

HELLO = """\
FROM busybox
RUN echo installing && mkdir -p /opt/node && echo 'console.log' > /opt/node/runtime
COPY . /app
WORKDIR /app
CMD ["cat", "index.js"]
"""


def build(store, ctx, **kw):
    lines: list[str] = []
    image = Builder(store, out=lines.append).build(BuildRequest(context=ctx, **kw))
    return image, lines


def layer_names(store, desc) -> list[str]:
    with tarfile.open(store.content.path(desc["digest"])) as tar:
        return tar.getnames()


def test_hello_builds_runs_and_rebuilds_from_cache(store, context):
    ctx = context({"Dockerfile": HELLO, "index.js": 'console.log("hello from " + require("os").hostname());\n'})
    image, lines = build(store, ctx, tags=["hello:v0.1"])
    assert lines[0] == "Step 1/5 : FROM busybox"
    assert "installing" in lines  # RUN's output is build progress
    assert lines[-2:] == [f"Successfully built {image.short_id}", "Successfully tagged hello:v0.1"]
    assert image.repo_tags == ("hello:v0.1",)
    # busybox's layer, RUN's, COPY's; WORKDIR and CMD change only the config.
    assert len(image.diff_ids) == 3
    assert layer_names(store, image.layers[2]) == ["app", "app/Dockerfile", "app/index.js"]
    cfg = image.config["config"]
    assert cfg["Cmd"] == ["cat", "index.js"] and cfg["WorkingDir"] == "/app"

    code, out = run_image(store, image)
    assert (code, out) == (0, 'console.log("hello from " + require("os").hostname());')

    # The history: one row per instruction, newest first, empty layers without size.
    rows = history_json(image, store.layer_sizes(image))
    assert [r["CreatedBy"] for r in rows[:4]] == ['CMD ["cat" "index.js"]', "WORKDIR /app", "COPY . /app # buildkit",
                                                   "RUN /bin/sh -c echo installing && mkdir -p /opt/node && echo 'console.log' > /opt/node/runtime # buildkit"]
    assert rows[0]["Id"] == image.id and rows[0]["Tags"] == ["hello:v0.1"] and all(r["Id"] == "<missing>" for r in rows[1:])
    assert rows[0]["Size"] == 0 and rows[1]["Size"] == 0 and rows[2]["Size"] > 0
    assert json.loads(json.dumps(image.config["rootfs"]["diff_ids"])) == image.diff_ids

    # Changing index.js reruns COPY and what follows; FROM and RUN come from the cache.
    (ctx / "index.js").write_text('console.log("this is v0.2");\n')
    again, lines = build(store, ctx, tags=["hello:v0.2"])
    steps = _step_results(lines)
    assert steps == {"RUN": "cache", "COPY": "ran", "WORKDIR": "ran", "CMD": "ran"}
    assert again.diff_ids[:2] == image.diff_ids[:2] and again.diff_ids[2] != image.diff_ids[2]
    assert run_image(store, again) == (0, 'console.log("this is v0.2");')

    # Nothing changed: every step from the cache, the same image.
    third, lines = build(store, ctx, tags=["hello:v0.2"])
    assert set(_step_results(lines).values()) == {"cache"} and third.id == again.id
    # --no-cache runs everything again.
    _, lines = build(store, ctx, no_cache=True)
    assert set(_step_results(lines).values()) == {"ran"}


def _step_results(lines: list[str]) -> dict[str, str]:
    """{keyword: "cache"|"ran"} for each step after FROM."""
    out, current = {}, None
    for line in lines:
        if line.startswith("Step "):
            current = line.split(" : ", 1)[1].split()[0]
            if current != "FROM":
                out[current] = "ran"
        elif line == " ---> Using cache" and current in out:
            out[current] = "cache"
    return out


def test_touching_a_file_keeps_the_cache_but_editing_it_does_not(store, context):
    ctx = context({"Dockerfile": "FROM busybox\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /ab\n",
                   "a.txt": "a\n", "b.txt": "b\n"})
    build(store, ctx)
    os.utime(ctx / "a.txt", (1, 1))  # only the mtime: the content digest is the same
    _, lines = build(store, ctx)
    assert set(_step_results(lines).values()) == {"cache"}
    (ctx / "b.txt").write_text("B\n")
    image, lines = build(store, ctx)
    assert _step_results(lines) == {"COPY": "ran", "RUN": "ran"}  # the first COPY from cache, the second reran
    assert [l for l in lines if l.startswith("Step 2/")] and lines[lines.index("Step 2/4 : COPY a.txt /a.txt") + 1] == " ---> Using cache"
    assert run_image(store, image, ["cat", "/ab"]) == (0, "a\nB")


def test_two_cold_builds_give_the_same_diff_ids(store, context, tmp_path):
    ctx = context({"Dockerfile": "FROM busybox\nRUN mkdir /data && echo fixed > /data/x && touch /data/y\nCOPY . /src/\nENV A=1\n",
                   "f.txt": "same\n", "sub/g.txt": "g\n"})
    first, _ = build(store, ctx)
    store.remove(first.id)
    store.content.delete(first.layers[-1]["digest"])
    from orch.build.cache import BuildCache

    BuildCache(store.root).clear()
    os.utime(ctx / "f.txt", (5, 5))  # a different checkout time must not matter
    second, lines = build(store, ctx)
    assert " ---> Using cache" not in lines
    assert second.diff_ids == first.diff_ids
    with tarfile.open(store.content.path(second.layers[1]["digest"])) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}  # SOURCE_DATE_EPOCH unset: clamped to 0


def test_multi_stage_copy_from_and_target(store, context):
    dockerfile = """\
ARG BASE=busybox
FROM $BASE AS builder
RUN mkdir /out && echo compiled > /out/app && chmod 755 /out/app
FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
COPY --from=builder /out/app /usr/local/bin/app
COPY --from=0 /out/ /opt/
CMD ["cat", "/usr/local/bin/app", "/opt/app"]
"""
    ctx = context({"Dockerfile": dockerfile})
    image, lines = build(store, ctx, tags=["multi"])
    assert not any("RUN echo tool" in l for l in lines)  # the final stage does not need `tools`
    assert run_image(store, image) == (0, "compiled\ncompiled")
    assert len(image.diff_ids) == 3

    tools, lines = build(store, ctx, target="tools")
    assert lines[0] == "Step 1/2 : FROM busybox AS tools"
    assert run_image(store, tools, ["cat", "/tool"]) == (0, "tool")
    with pytest.raises(UserError, match="target stage 'nope' could not be found; the stages are: builder, tools"):
        build(store, ctx, target="nope")


def test_dockerignore_keeps_files_out(store, context):
    ctx = context({"Dockerfile": "FROM busybox\nCOPY . /app/\n", ".dockerignore": "secret*\n*.log\n!keep.log\n",
                   "main.py": "x\n", "secret.key": "k\n", "debug.log": "d\n", "keep.log": "l\n"})
    image, _ = build(store, ctx)
    assert sorted(layer_names(store, image.layers[-1])) == ["app", "app/.dockerignore", "app/Dockerfile", "app/keep.log", "app/main.py"]
    # Editing an ignored file does not even invalidate the cache.
    (ctx / "secret.key").write_text("other\n")
    _, lines = build(store, ctx)
    assert set(_step_results(lines).values()) == {"cache"}
    ctx2 = context({"Dockerfile": "FROM busybox\nCOPY secret.key /\n", ".dockerignore": "secret*\n", "secret.key": "k\n"}, name="ctx2")
    with pytest.raises(UserError, match=r"Dockerfile:2: COPY: 'secret.key' not found in the build context; .dockerignore may exclude it"):
        build(store, ctx2)


def test_copy_never_reads_outside_the_context(store, context, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("host secret\n")
    ctx = context({"Dockerfile": "FROM busybox\nCOPY link /x\n"})
    (ctx / "link").symlink_to(outside)
    with pytest.raises(UserError, match=r"COPY: 'link' is a symbolic link to '.*outside.txt', outside the build context"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY up /x\n")
    (ctx / "up").symlink_to("../outside.txt")
    with pytest.raises(UserError, match="outside the build context"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY ../outside.txt /x\n")
    with pytest.raises(UserError, match="points outside the build context"):
        build(store, ctx)
    # A link inside a copied directory is copied as a link, not followed.
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY dir /d\n")
    (ctx / "dir").mkdir()
    (ctx / "dir" / "inner").symlink_to(outside)
    image, _ = build(store, ctx)
    with tarfile.open(store.content.path(image.layers[-1]["digest"])) as tar:
        inner = tar.getmember("d/inner")
        assert inner.issym() and inner.linkname == str(outside)


def test_copy_semantics_chown_chmod_add_tar_and_metadata(store, context, tmp_path):
    archive = tmp_path / "ctx" / "bundle.tar.gz"
    ctx = context({"Dockerfile": """\
FROM busybox
ARG WHERE=/srv
ENV APP_HOME=$WHERE/app
WORKDIR $APP_HOME
COPY --chown=nobody:nogroup --chmod=600 conf.ini ./
COPY *.txt /texts/
ADD bundle.tar.gz /unpacked/
LABEL org.example.version="1.0" team=core
EXPOSE 8080 53/udp
USER nobody
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost:8080
ONBUILD RUN echo triggered > /tmp/triggered
ENTRYPOINT ["/bin/sh", "-c"]
""", "conf.ini": "k=v\n", "one.txt": "1\n", "two.txt": "2\n"})
    src = tmp_path / "tarsrc"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "file").write_text("inside\n")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "pkg", arcname="pkg")
    image, _ = build(store, ctx, tags=["meta"], build_args={"WHERE": "/opt"})
    cfg = image.config["config"]
    assert cfg["WorkingDir"] == "/opt/app" and "APP_HOME=/opt/app" in cfg["Env"]
    assert not any(e.startswith("WHERE=") for e in cfg["Env"])  # ARGs are not kept in the image
    assert cfg["Labels"] == {"org.example.version": "1.0", "team": "core"}
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["User"] == "nobody" and cfg["Volumes"] == {"/data": {}} and cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q -O- localhost:8080"], "Interval": 5_000_000_000, "Retries": 2}
    assert cfg["OnBuild"] == ["RUN echo triggered > /tmp/triggered"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] is None
    history = image.config["history"]
    assert [h.get("empty_layer", False) for h in history[1:]] == [True, True, False, False, False, False] + [True] * 8
    # Every instruction, as buildkit's dockerfile2llb writes it (Go's %v, %q and %+v included).
    assert [h["created_by"] for h in history[1:]] == [
        "ARG WHERE=/opt",
        "ENV APP_HOME=/opt/app",
        "WORKDIR /opt/app",
        "COPY --chown=nobody:nogroup --chmod=600 conf.ini ./ # buildkit",
        "COPY *.txt /texts/ # buildkit",
        "ADD bundle.tar.gz /unpacked/ # buildkit",
        "LABEL org.example.version=1.0 team=core",
        "EXPOSE [8080/tcp 53/udp]",
        "USER nobody",
        "VOLUME [/data]",
        "STOPSIGNAL SIGINT",
        "HEALTHCHECK {Test:[CMD-SHELL wget -q -O- localhost:8080] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}",
        "ONBUILD RUN echo triggered > /tmp/triggered",
        'ENTRYPOINT ["/bin/sh" "-c"]',
    ]

    with tarfile.open(store.content.path(image.layers[2]["digest"])) as tar:
        conf = tar.getmember("opt/app/conf.ini")
        assert (conf.uid, conf.gid, conf.mode) == (65534, 65534, 0o600)
    assert set(layer_names(store, image.layers[3])) >= {"texts/one.txt", "texts/two.txt"}
    assert "unpacked/pkg/file" in layer_names(store, image.layers[4])

    # ONBUILD triggers run in the image built FROM this one.
    child = context({"Dockerfile": "FROM meta\nUSER root\n"}, name="child")
    built, lines = build(store, child)
    assert "# Executing 1 build trigger" in lines
    assert "triggered" in run_image(store, built, ["cat /tmp/triggered"])[1]
    assert built.config["config"].get("OnBuild") is None


def test_failures_name_the_step(store, context):
    ctx = context({"Dockerfile": "FROM busybox\nENV A=1\nRUN echo about to fail && exit 100\n"})
    with pytest.raises(BuildFailed, match=r"^Dockerfile:3: step 3/3 RUN echo about to fail && exit 100: exit code 100$"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN ["/no/such/program"]\n')
    with pytest.raises(BuildFailed, match=r"^Dockerfile:2: step 2/2 RUN .*/no/such/program.*\(exit code 127\)$"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nADD http://example.com/x /x\n")
    with pytest.raises(BuildFailed, match="remote sources are not supported"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nRUN test $TARGETARCH = amd64 && exit 7\n")
    with pytest.raises(BuildFailed, match="exit code 7"):  # the automatic platform ARGs are there
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM --platform=linux/arm64 busybox\n")
    with pytest.raises(UserError, match="platform 'linux/arm64' is not supported"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY . /etc/passwd\n")
    with pytest.raises(BuildFailed, match="^Dockerfile:2: COPY: cannot copy the directory '.' to '/etc/passwd': it exists in the image and is not a directory$"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY Dockerfile /etc/passwd/x\n")
    with pytest.raises(BuildFailed, match="^Dockerfile:2: COPY: cannot write .* into the image: Not a directory$"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM nosuchimage\n")
    with pytest.raises(UserError, match="Dockerfile:1: FROM nosuchimage: no such image: nosuchimage"):
        build(store, ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=cache,target=/root/.cache true\n")
    with pytest.raises(UserError, match="RUN --mount is not supported"):
        build(store, ctx)


def test_from_scratch_and_build_args(store, context):
    ctx = context({"Dockerfile": "FROM busybox AS tools\nFROM scratch\nARG NAME=default\nCOPY --from=tools /bin/busybox /busybox\n"
                   "COPY --from=busybox:latest /etc/passwd /etc/\n"
                   "COPY ${NAME}.txt /\nCMD [\"/busybox\", \"cat\", \"/given.txt\"]\n", "given.txt": "from scratch\n"})
    image, lines = build(store, ctx, build_args={"NAME": "given", "UNUSED": "1"})
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in lines
    assert len(image.diff_ids) == 3
    assert run_image(store, image) == (0, "from scratch")
    assert run_image(store, image, ["/busybox", "head", "-1", "/etc/passwd"]) == (0, "root:x:0:0:root:/root:/bin/sh")


def test_a_stopped_build_leaves_no_container_cgroup_or_snapshot(store, context):
    """The agent stops the worker of a build whose client left with SIGTERM."""
    import subprocess
    import sys

    from .conftest import build_cgroups

    ctx = context({"Dockerfile": "FROM busybox\nRUN echo started && sleep 60\n"})
    req = json.dumps({"root": str(store.root), "context": str(ctx)})
    worker = subprocess.Popen([sys.executable, "-m", "orch.build.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        worker.stdin.write(req)
        worker.stdin.close()
        for line in worker.stdout:
            if json.loads(line).get("stream") == "started\n":
                break
        assert build_cgroups(store.root) != []  # the step runs
        worker.terminate()
        assert worker.wait(timeout=10) == 143
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert build_cgroups(store.root) == []
    assert store.snapshots.list_active() == []



def test_heredocs_in_run_and_copy(store, context):
    ctx = context({"Dockerfile": (
        "FROM busybox\n"
        "ARG WHO=world\n"
        "RUN <<EOF\n"
        "echo one > /one\n"
        "echo \"two $WHO\" > /two\n"
        "EOF\n"
        "RUN cat <<A > /a && cat <<-B > /b\n"
        "alpha\n"
        "A\n"
        "\tbeta\n"
        "\tB\n"
        "COPY <<EOF /etc/app.conf\n"
        "greeting=\"hello $WHO\"\n"
        "EOF\n"
        "COPY <<\"EOF\" /etc/raw\n"
        "keep $WHO\n"
        "EOF\n"
        'CMD ["cat", "/one", "/two", "/a", "/b", "/etc/app.conf", "/etc/raw"]\n')})
    image, _ = build(store, ctx, build_args={"WHO": "orch"})
    assert run_image(store, image) == (0, 'one\ntwo orch\nalpha\nbeta\ngreeting="hello orch"\nkeep $WHO')


def test_shell_user_and_exec_form(store, context):
    ctx = context({"Dockerfile": (
        'FROM busybox\n'
        'SHELL ["/bin/sh", "-e", "-c"]\n'
        'RUN false; echo never > /never\n'
        'USER nobody\n'
        'RUN id -u > /tmp/uid\n'
        'RUN ["/bin/sh", "-c", "echo exec form as $(id -un) >> /tmp/uid"]\n'
        'CMD cat /tmp/uid\n')})
    with pytest.raises(BuildFailed, match="step 3/7 RUN false; echo never > /never: exit code 1"):
        build(store, ctx)  # -e from SHELL stops at `false`
    (ctx / "Dockerfile").write_text((ctx / "Dockerfile").read_text().replace("RUN false; echo never > /never\n", ""))
    image, _ = build(store, ctx)
    assert image.config["config"]["Cmd"] == ["/bin/sh", "-e", "-c", "cat /tmp/uid"]  # shell-form CMD goes through SHELL too
    assert run_image(store, image) == (0, "65534\nexec form as nobody")
