"""`orch history` beside dockerd's own: the same Dockerfile built by orch and by a private
dockerd's classic builder (DOCKER_BUILDKIT=0; bench/peers.py starts it with its own data
root and socket, from the busybox archive orch made), then `history` compared column by
column: one row per instruction (ARG included), the same SIZE (docker's layer size: file
bytes and symlink lengths, an inode once; 0B for a layer that only makes a directory), the
same CREATED BY where the classic builder and buildkit write the same text, and the
table's header and layout.

orch writes CREATED BY as buildkit does (docker's default builder); where buildkit's text
differs from the classic builder's, the test says what orch writes and checks that the
classic builder's row is the same instruction.
"""

import os
import re
import shutil
import subprocess

import pytest

from bench.peers import private_dockerd

from .conftest import cached_base
from .test_cli import node  # noqa: F401 (the module's agent and CLI)

pytestmark = pytest.mark.privileged

DOCKERFILE = """\
FROM busybox
ARG X=1
ARG Y
ENV APP=/app A="b c"
WORKDIR /app
RUN mkdir -p /app/data && echo one > /app/data/one
COPY lib/ /app/lib/
ADD app.txt /app/
COPY app.txt lib/a /app/two/
RUN echo $X > /x
RUN rm /etc/shadow && ln /x /x2
WORKDIR /app
RUN ["sh", "-c", "echo hi"]
LABEL bench=orch "other"="x y"
EXPOSE 80/tcp 53/udp
USER root
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo hi
MAINTAINER someone
ENTRYPOINT ["sh"]
CMD ["cat", "/app/app.txt"]
"""

# Where buildkit (and so orch) writes another text than the classic builder: the classic
# builder's row (a pattern) -> what orch shows.
BUILDKIT_TEXT = {
    r"ARG Y": "ARG Y=2",  # the value --build-arg gave, not the line as written
    # The sources as written, not the classic builder's content hashes:
    r"COPY dir:[0-9a-f]{64} in /app/lib/ ": "COPY lib/ /app/lib/",
    r"ADD file:[0-9a-f]{64} in /app/ ": "ADD app.txt /app/",
    r"COPY multi:[0-9a-f]{64} in /app/two/ ": "COPY app.txt lib/a /app/two/",
    r"EXPOSE 53/udp 80/tcp": "EXPOSE [80/tcp 53/udp]",  # Go's %v of the ports as written, not sorted
    # Go's %+v of the healthcheck, not %q of a pointer to it:
    r"HEALTHCHECK .*": "HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
}
CLASSIC_PREFIX = re.compile(r"^/bin/sh -c #\(nop\) +")


@pytest.fixture(scope="module")
def dockerd():
    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("needs dockerd and the docker CLI (apt-get install docker.io) for the comparison")
    with private_dockerd(cached_base("busybox")) as env:
        if isinstance(env, str):
            pytest.fail(env)  # dockerd is installed but did not start: that is a failure here
        yield env


@pytest.fixture(scope="module")
def built(node, dockerd, tmp_path_factory):  # noqa: F811
    ctx = tmp_path_factory.mktemp("history-ctx")
    (ctx / "lib").mkdir()
    (ctx / "lib" / "a").write_text("hello\n")
    (ctx / "lib" / "b").write_text("world12\n")
    os.link(ctx / "lib" / "a", ctx / "lib" / "hard")  # one inode: counted once
    os.symlink("a", ctx / "lib" / "link")  # a symlink counts the length of its target
    (ctx / "app.txt").write_text("v1\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    docker_env = dict(dockerd, DOCKER_BUILDKIT="0")
    subprocess.run(["docker", "build", "-q", "-t", "hist:1", "--build-arg", "Y=2", str(ctx)], env=docker_env, check=True,
                   capture_output=True, timeout=300)
    node.orch("build", "-q", "-t", "hist:1", "--build-arg", "Y=2", str(ctx))

    def docker(*args: str) -> str:
        return subprocess.run(["docker", "history", *args, "hist:1"], env=dockerd, check=True, capture_output=True,
                              text=True, timeout=60).stdout

    def orch(*args: str) -> str:
        return node.orch("history", *args, "hist:1").stdout

    return docker, orch


def test_one_row_per_instruction_with_docker_sizes(built):
    docker, orch = built
    fmt = "{{.Size}}\t{{.CreatedBy}}"
    theirs = [line.split("\t") for line in docker("--no-trunc", "--format", fmt).splitlines()]
    ours = [line.split("\t") for line in orch("--no-trunc", "--format", fmt).splitlines()]
    assert len(ours) == len(theirs) == 24  # busybox's import row and 23 instructions
    assert [size for size, _ in ours] == [size for size, _ in theirs]
    raw = "{{.Size}}"
    assert orch("--human=false", "--format", raw) == docker("--human=false", "--format", raw)
    for (_, mine), (_, classic) in zip(ours, theirs):
        text = CLASSIC_PREFIX.sub("", classic)
        if text.startswith(("|", "/bin/sh -c ", "sh -c ")):
            text = "RUN " + text  # the classic builder writes RUN's command alone
        expected = next((v for k, v in BUILDKIT_TEXT.items() if re.fullmatch(k, text)), text)
        if mine.startswith(("RUN ", "COPY ", "ADD ")):
            expected += " # buildkit"  # buildkit marks the steps that ran or copied
        assert mine == expected, classic


def test_the_table_and_its_columns(built):
    docker, orch = built
    theirs, ours = docker().splitlines(), orch().splitlines()
    # The same headers, aligned alike (CREATED's width depends on how long ago each was built).
    assert re.split(r"\s{2,}", ours[0]) == re.split(r"\s{2,}", theirs[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]

    def offsets(header: str) -> list[int]:
        return [header.index(name) for name in ("CREATED", "CREATED BY", "SIZE", "COMMENT")]

    mine, classic = offsets(ours[0]), offsets(theirs[0])
    assert mine[0] == classic[0] and [b - a for a, b in zip(mine[1:], mine[2:])] == [b - a for a, b in zip(classic[1:], classic[2:])]
    assert len(ours) == len(theirs)
    # CREATED BY is cut at 45 characters with an ellipsis, as docker cuts it.
    long = [line for line in ours if "mkdir -p /app/data" in line][0]
    assert "RUN |2 X=1 Y=2 /bin/sh -c mkdir -p /app/data…" in long
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)\n" * 24,
                        orch("--human=false", "--format", "{{.CreatedSince}}\n").replace("\n\n", "\n"))
    assert len(orch("-q").split()) == len(docker("-q").split()) == 24
    top = orch("-q", "--no-trunc").split()[0]
    assert top == node_image_id(built)


def node_image_id(built) -> str:
    _, orch = built
    return orch("--no-trunc", "--format", "{{.ID}}").split()[0]
