"""Semantic checks of a parsed Dockerfile (orch.build.dockerfile_checks)."""

import pytest

from orch.build.dockerfile import DockerfileError, parse
from orch.build.dockerfile_checks import check_platform, parse_duration, parse_flags, parse_mount, validate

# (Dockerfile, one-line message)
ERROR_CASES = [
    ("FROM a\n\n\nRUNN make\n", "Dockerfile:4: unknown instruction 'RUNN'; did you mean 'RUN'?"),
    ("FROM a\ncopy a b\nXYZZY\n", "Dockerfile:3: unknown instruction 'XYZZY'"),
    ("RUN make\n", "Dockerfile:1: RUN comes before the first FROM; only ARG may"),
    ("ARG V=1\n", "Dockerfile: no FROM instruction; a Dockerfile must start a stage with FROM"),
    ("FROM --platform=linux/arm64 debian\n", "Dockerfile:1: platform 'linux/arm64' is not supported: orch builds linux/amd64 images only"),
    ("FROM --platform=windows/amd64 debian\n", "Dockerfile:1: platform 'windows/amd64' is not supported: orch builds linux/amd64 images only"),
    ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments (FROM image [AS name])"),
    ("FROM a AS 1st\n", "Dockerfile:1: invalid name for build stage: '1st', name can't start with a number or contain symbols"),
    ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name 'x'"),
    ("FROM a\nCOPY --form=x a b\n", "Dockerfile:2: unknown flag '--form' for COPY; did you mean '--from'?"),
    ("FROM a\nWORKDIR --from=x /a\n", "Dockerfile:2: unknown flag '--from' for WORKDIR; WORKDIR takes no flags"),
    ("FROM a\nCOPY --from=a --from=b a b\n", "Dockerfile:2: duplicate flag specified: --from"),
    ("FROM a\nCOPY --link=maybe a b\n", "Dockerfile:2: expecting boolean value for flag --link, not: maybe"),
    ("FROM a\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: --from"),
    ("FROM a\nCOPY onlyone\n", "Dockerfile:2: COPY requires at least two arguments (sources and a destination), but only one was given"),
    ("FROM a\nCOPY a <<EOF\nx\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
    ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
    ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
    ("FROM a\nENV =x\n", "Dockerfile:2: ENV names can not be blank"),
    ("FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
    ('FROM a\nVOLUME [""]\n', "Dockerfile:2: VOLUME specified can not be an empty string"),
    ("FROM a\nSHELL /bin/bash -c\n", 'Dockerfile:2: SHELL requires the arguments to be in JSON form, for example SHELL ["/bin/sh", "-c"]'),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD RUNN x\n", "Dockerfile:2: unknown instruction 'RUNN'; did you mean 'RUN'?"),
    ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
    ("FROM a\nHEALTHCHECK CONNECT TCP 7000\n", "Dockerfile:2: unknown type 'CONNECT' in HEALTHCHECK (try CMD)"),
    ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: missing command after HEALTHCHECK CMD"),
    ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", "Dockerfile:2: invalid duration '5' for --interval; write it like 30s, 1m30s or 500ms"),
    ("FROM a\nHEALTHCHECK --timeout=10us CMD true\n", "Dockerfile:2: --timeout cannot be less than 1ms"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD true\n", "Dockerfile:2: --retries cannot be negative (-1)"),
    ("FROM a\nRUN --mount=type=nfs,target=/x make\n", "Dockerfile:2: unsupported mount type 'nfs'; use one of: bind, cache, tmpfs, secret, ssh"),
    ("FROM a\nRUN --mount=type=cahce,target=/x make\n", "Dockerfile:2: unsupported mount type 'cahce'; did you mean 'cache'?"),
    ("FROM a\nRUN --mount=type=cache make\n", "Dockerfile:2: --mount=type=cache: a cache mount needs a target"),
    ("FROM a\nRUN --network=bridge make\n", "Dockerfile:2: invalid network mode 'bridge'; use one of: default, none, host"),
]


@pytest.mark.parametrize("text, message", ERROR_CASES)
def test_errors(text, message):
    with pytest.raises(DockerfileError) as err:
        validate(parse(text))
    assert str(err.value) == message


MULTI_STAGE = """\
ARG BASE=debian:12
FROM --platform=linux/amd64 ${BASE} AS Build
WORKDIR /src
COPY --chown=1000:1000 --link . .
RUN --mount=type=cache,target=/root/.cache,sharing=locked --network=none make
HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f http://localhost/
FROM scratch
COPY --from=build /src/app /app
ONBUILD COPY . /x
CMD ["/app"]
"""


def test_stages():
    checked = validate(parse(MULTI_STAGE))
    assert [a.args for a in checked.meta_args] == [("BASE=debian:12",)]
    build, final = checked.stages
    assert (build.index, build.name, build.base, build.platform) == (0, "build", "${BASE}", "linux/amd64")
    assert [i.keyword for i in build.instructions] == ["WORKDIR", "COPY", "RUN", "HEALTHCHECK"]
    assert (final.index, final.name, final.base, final.platform) == (1, None, "scratch", None)
    assert [i.keyword for i in final.instructions] == ["COPY", "ONBUILD", "CMD"]
    assert checked.stage("BUILD") is build
    with pytest.raises(DockerfileError) as err:
        checked.stage("test")
    assert str(err.value) == "target stage 'test' could not be found; the stages are: build"


def test_flags_as_values():
    checked = validate(parse(MULTI_STAGE))
    copy, run, health = checked.stages[0].instructions[1:]
    assert parse_flags(copy) == {"chown": "1000:1000", "link": True}
    assert parse_flags(run) == {"mount": ["type=cache,target=/root/.cache,sharing=locked"], "network": "none"}
    assert parse_flags(health) == {"interval": "1m30s", "timeout": "500ms", "retries": "3"}
    assert parse_flags(parse("FROM a\nCOPY --link=false --exclude=*.md --exclude=.git a b\n").instructions[1]) == {"link": False, "exclude": ["*.md", ".git"]}


# (value, fields)
MOUNT_CASES = [
    ("type=cache,target=/root/.cache", {"type": "cache", "target": "/root/.cache"}),
    ("target=/src", {"type": "bind", "target": "/src"}),
    ("type=bind,src=.,dst=/src,ro", {"type": "bind", "source": ".", "target": "/src", "readonly": "true"}),
    ("type=secret,id=token", {"type": "secret", "id": "token"}),
    ('type=tmpfs,"target=/a,b",size=64m', {"type": "tmpfs", "target": "/a,b", "size": "64m"}),
]


@pytest.mark.parametrize("value, fields", MOUNT_CASES)
def test_mounts(value, fields):
    assert parse_mount(value) == fields


@pytest.mark.parametrize("platform", ["linux/amd64", "LINUX/AMD64", "linux/amd64/v1"])
def test_platform_accepted(platform):
    check_platform(platform)


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/amd64/v3", "amd64", "linux"])
def test_platform_refused(platform):
    with pytest.raises(DockerfileError):
        check_platform(platform)


def test_platform_with_variables_is_left_to_the_builder():
    assert validate(parse("FROM --platform=$BUILDPLATFORM a\n")).stages[0].platform == "$BUILDPLATFORM"


@pytest.mark.parametrize("text, seconds", [("0", 0.0), ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("2h45m", 9900.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1m 30s", ".s"])
def test_bad_durations(text):
    with pytest.raises(DockerfileError):
        parse_duration(text)


def test_corpus_dockerfiles_that_buildkit_would_build_pass():
    # The parser corpus holds instructions that only parse (HEALTHCHECK CONNECT, MAINTAINER
    # with several words); these real-world files are complete and must pass the checks.
    from pathlib import Path

    data = Path(__file__).parents[2] / "data" / "buildkit" / "testfiles"
    for case in ("ADD-COPY-with-JSON", "brimstone-docker-consul", "cpuguy83-nagios", "docker", "influxdb", "mumble", "nginx", "weechat"):
        validate(parse((data / case / "Dockerfile").read_text(), filename=case))
