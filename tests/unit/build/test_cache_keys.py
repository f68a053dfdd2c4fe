"""Cache keys as tables: what must change a step's key and what must not."""

import pytest

from orch.build.cache import BuildCache, SourceEntry, compute_cache_key, compute_sources_digest
from orch.build import steps
from orch.build.steps import add_ports, join_workdir, set_entrypoint, set_env

P1 = "sha256:" + "1" * 64
P2 = "sha256:" + "2" * 64
F = SourceEntry("0:app/main.py", "file", 0o644, 1000, 1000, "sha256:" + "a" * 64)


def key(parent=P1, text='RUN ["/bin/sh","-c","make"]', sources=None, build_args=None):
    return compute_cache_key(parent, text, sources=sources, build_args=build_args)


BASE = key()

# (name, the key of a changed step, whether it must differ from BASE)
CASES = [
    ("the same step", key(), False),
    ("another parent", key(parent=P2), True),
    ("another instruction", key(text='RUN ["/bin/sh","-c","make test"]'), True),
    ("a build arg in scope", key(build_args={"VERSION": "1"}), True),
    ("no build args is the same as an empty set", key(build_args={}), False),
    ("sources read", key(sources=compute_sources_digest([F])), True),
]


@pytest.mark.parametrize("name,changed,differs", CASES, ids=[c[0] for c in CASES])
def test_what_changes_a_key(name, changed, differs):
    assert (changed != BASE) is differs


def test_build_arg_values_and_order():
    assert key(build_args={"A": "1", "B": "2"}) == key(build_args={"B": "2", "A": "1"})
    assert key(build_args={"A": "1"}) != key(build_args={"A": "2"})


def entry(**kw):
    values = dict(name=F.name, kind=F.kind, mode=F.mode, uid=F.uid, gid=F.gid, content=F.content)
    values.update(kw)
    return SourceEntry(**values)


SOURCE_CASES = [
    ("content", entry(content="sha256:" + "b" * 64), True),
    ("mode", entry(mode=0o755), True),
    ("owner", entry(uid=0), True),
    ("group", entry(gid=0), True),
    ("name", entry(name="0:app/other.py"), True),
    ("kind", entry(kind="symlink"), True),
    ("nothing", entry(), False),
]


@pytest.mark.parametrize("name,changed,differs", SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_what_changes_a_sources_digest(name, changed, differs):
    # Mtimes are not even part of a SourceEntry: a touch cannot change the digest.
    assert (compute_sources_digest([changed]) != compute_sources_digest([F])) is differs


def test_sources_digest_ignores_listing_order():
    g = entry(name="0:app/z.py")
    assert compute_sources_digest([F, g]) == compute_sources_digest([g, F])
    assert compute_sources_digest([F, g]) != compute_sources_digest([F])


def test_index_round_trip(tmp_path):
    cache = BuildCache(tmp_path)
    k = key()
    assert cache.get(k) is None
    cache.put(k, {"config": {"a": 1}, "layers": []})
    assert cache.get(k) == {"config": {"a": 1}, "layers": []}
    cache.drop(k)
    assert cache.get(k) is None
    assert not list((tmp_path / "build-cache").glob(".*tmp"))


WORKDIRS = [
    ("/", "app", "/app"),
    ("/app", "src", "/app/src"),
    ("/app", "/srv", "/srv"),
    ("/a/b", "../c", "/a/c"),
    ("/", "../..", "/"),
    ("/app", "./x/", "/app/x"),
]


@pytest.mark.parametrize("current,path,expected", WORKDIRS)
def test_workdir_joins(current, path, expected):
    assert join_workdir(current, path) == expected


def test_config_steps_do_not_mutate_their_input():
    inner = {"Env": ["A=1"], "Cmd": ["sh"]}
    assert set_env(inner, [("A", "2"), ("B", "3")])["Env"] == ["A=2", "B=3"]
    assert set_entrypoint(inner, ["/bin/app"]) == {"Env": ["A=1"], "Cmd": None, "Entrypoint": ["/bin/app"]}
    assert add_ports(inner, ["80", "53/udp", "1000-1001"])["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "1000/tcp": {}, "1001/tcp": {}}
    assert inner == {"Env": ["A=1"], "Cmd": ["sh"]}


# The history's texts, as buildkit prints Go values (fmt's %q, %v, %+v, time.Duration).
GO_TEXTS = [
    (steps.go_quoted_list, ["cat", "/app/a b"], '["cat" "/app/a b"]'),
    (steps.go_quoted_list, ['say "hi"\n', "tab\there", "é", "\x00"], r'["say \"hi\"\n" "tab\there" "é" "\x00"]'),
    (steps.go_list, ["/bin/sh", "-c"], "[/bin/sh -c]"),
    (steps.go_duration, 0, "0s"),
    (steps.go_duration, 500_000_000, "500ms"),
    (steps.go_duration, 1_500_000_000, "1.5s"),
    (steps.go_duration, 90_000_000_000, "1m30s"),
    (steps.go_duration, 3_600_000_000_000, "1h0m0s"),
    (steps.go_duration, 1_500, "1.5µs"),
    (steps.healthcheck_history, {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 3},
     "HEALTHCHECK {Test:[CMD true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"),
    (lambda a: steps.run_history(*a), (["/bin/sh", "-c", "make"], {"A": "1", "B": None, "C": "3"}, {"C": "env"}),
     "RUN |3 A=1 B= C=env /bin/sh -c make # buildkit"),
    (lambda a: steps.run_history(*a), (["make"], {}, {}), "RUN make # buildkit"),
    (lambda a: steps.copy_history(*a), ("COPY", {"chown": "1:1", "chmod": None}, ["a", "<<EOF"], "/d/"), "COPY --chown=1:1 a <<EOF /d/ # buildkit"),
]


@pytest.mark.parametrize("fn,value,text", GO_TEXTS)
def test_history_texts(fn, value, text):
    assert fn(value) == text
