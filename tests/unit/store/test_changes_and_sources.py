"""`--change` instructions and the Debian mirror a bootstrap uses: pure functions as tables."""

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime.bootstrap import DEFAULT_MIRROR, pick_mirror
from orch.node.runtime.imageconfig import apply_changes

CHANGES = [
    (['CMD ["sh"]'], {"Cmd": ["sh"]}),
    (["CMD echo hi"], {"Cmd": ["/bin/sh", "-c", "echo hi"]}),
    (['ENTRYPOINT ["/bin/app", "-v"]'], {"Entrypoint": ["/bin/app", "-v"]}),
    (["ENV A=1 B=two"], {"Env": ["A=1", "B=two"]}),
    (["ENV A 1 2"], {"Env": ["A=1 2"]}),
    (["ENV A=1", "ENV A=2"], {"Env": ["A=2"]}),
    (["WORKDIR /srv"], {"WorkingDir": "/srv"}),
    (["USER nobody:nogroup"], {"User": "nobody:nogroup"}),
    (["EXPOSE 80 53/udp"], {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}),
    (['LABEL a=1 "b=two words"'], {"Labels": {"a": "1", "b": "two words"}}),
    (['VOLUME ["/data"]'], {"Volumes": {"/data": {}}}),
    (["STOPSIGNAL SIGINT"], {"StopSignal": "SIGINT"}),
    (["cmd sh"], {"Cmd": ["/bin/sh", "-c", "sh"]}),
]


@pytest.mark.parametrize("changes, expected", CHANGES)
def test_apply_changes(changes, expected):
    assert apply_changes({}, changes) == expected


def test_apply_changes_does_not_mutate_its_input():
    before = {"Env": ["A=1"]}
    assert apply_changes(before, ["ENV B=2"]) == {"Env": ["A=1", "B=2"]}
    assert before == {"Env": ["A=1"]}


@pytest.mark.parametrize("change, message", [("RUN make", "RUN is not one of"), ("ENV A", "want KEY=VALUE"), ("", "an empty line")])
def test_bad_changes_are_refused(change, message):
    with pytest.raises(InvalidArgument) as err:
        apply_changes({}, [change])
    assert message in str(err.value)


DEB822 = """Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

MIRRORS = [
    ({"/etc/apt/sources.list.d/debian.sources": DEB822}, "http://mirror.example/debian"),
    ({"/etc/apt/sources.list": "# comment\ndeb [arch=amd64] http://old.example/debian/ bookworm main\n"}, "http://old.example/debian"),
    ({"/etc/apt/sources.list": "deb http://sec.example bookworm-security main\n"}, DEFAULT_MIRROR),
    ({"/etc/apt/sources.list.d/x.sources": "Types: deb-src\nURIs: http://src.example\nSuites: bookworm\n"}, DEFAULT_MIRROR),
    ({"/etc/apt/sources.list.d/x.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example\nSuites: bookworm\n"}, DEFAULT_MIRROR),
    ({}, DEFAULT_MIRROR),
]


@pytest.mark.parametrize("sources, mirror", MIRRORS)
def test_pick_mirror(sources, mirror):
    assert pick_mirror(sources) == mirror
