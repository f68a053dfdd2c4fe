"""Several -f files (13-merge.md), extends, include, profiles and the project name."""

import pytest

from orch.spec import StackError, load_project

BASE = """
services:
  web:
    image: web:1
    build: ./src
    command: [serve, --port, "80"]
    environment: {A: "1", B: "2"}
    labels: [tier=front]
    ports: ["8080:80", "9090:90"]
    volumes: ["data:/data", "./conf:/conf"]
    dns: 1.1.1.1
    depends_on: [db]
    healthcheck: {test: [CMD, base], interval: 10s}
    secrets: [s1]
    extra_hosts: ['a=10.0.0.1', base=10.0.0.9]
    cap_add: [NET_ADMIN]
    networks: {front: {aliases: [a, b]}}
    ulimits: {nofile: 100, nproc: 5}
  db:
    image: postgres
volumes: {data: {}}
networks: {front: {}}
secrets: {s1: {file: ./s1}, s2: {file: ./s2}}
"""


def merged(load, override: str):
    return load({"compose.yaml": BASE, "override.yaml": override}, main=["compose.yaml", "override.yaml"]).to_dict()["services"]["web"]


MERGES = [
    # scalars are replaced
    ("services: {web: {image: web:2}}", "image", "web:2"),
    # command and entrypoint are replaced, not appended
    ("services: {web: {command: run}}", "command", ["run"]),
    # mappings merge; list and mapping forms mix
    ("services: {web: {environment: [B=two, C=3]}}", "environment", {"A": "1", "B": "two", "C": "3"}),
    ("services: {web: {labels: {tier: back, x: y}}}", "labels", {"tier": "back", "x": "y"}),
    # healthcheck merges, but its test is replaced
    ("services: {web: {healthcheck: {test: [CMD, over]}}}", "healthcheck", {"test": ["CMD", "over"], "interval": "10s"}),
    # sequences append (a string dns becomes a list first)
    ("services: {web: {dns: [8.8.8.8]}}", "dns", ["1.1.1.1", "8.8.8.8"]),
    # depends_on list + map merge by name
    (
        "services: {web: {depends_on: {cache: {condition: service_healthy}}}, cache: {image: redis}}",
        "depends_on",
        {"db": {"condition": "service_started", "required": True}, "cache": {"condition": "service_healthy", "required": True}},
    ),
    # ports are unique by ip, target, published, protocol: the same one is not repeated
    (
        "services: {web: {ports: ['8080:80', '8443:443']}}",
        "ports",
        [
            {"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"},
            {"target": 90, "published": "9090", "protocol": "tcp", "mode": "ingress"},
            {"target": 443, "published": "8443", "protocol": "tcp", "mode": "ingress"},
        ],
    ),
    # volumes are unique by target: the later one replaces in place
    (
        "services: {web: {volumes: ['other:/data:ro']}}\nvolumes: {other: {}}",
        "volumes",
        [
            {"type": "volume", "source": "other", "target": "/data", "read_only": True, "volume": {}},
            {"type": "bind", "source": "<dir>/conf", "target": "/conf", "bind": {"create_host_path": True}},
        ],
    ),
    # secrets are unique by target
    ("services: {web: {secrets: [s1, s2]}}", "secrets", [{"source": "s1"}, {"source": "s2"}]),
    # build: a string is the context, merged with the mapping form
    ("services: {web: {build: {dockerfile: Dockerfile.dev}}}", "build", None),
    # extra_hosts are a union; a ulimit is replaced whole
    ("services: {web: {extra_hosts: ['a=10.0.0.1', 'b:10.0.0.2']}}", "extra_hosts", {"a": ["10.0.0.1"], "b": ["10.0.0.2"], "base": ["10.0.0.9"]}),
    ("services: {web: {ulimits: {nofile: {soft: 10, hard: 20}}}}", "ulimits", {"nofile": {"soft": 10, "hard": 20}, "nproc": {"soft": 5, "hard": 5}}),
    # other sequences that compose-go keeps unique
    ("services: {web: {dns: [1.1.1.1, 8.8.8.8], cap_add: [NET_ADMIN, SYS_TIME]}}", "dns", ["1.1.1.1", "8.8.8.8"]),
    ("services: {web: {cap_add: [SYS_TIME, NET_ADMIN]}}", "cap_add", ["NET_ADMIN", "SYS_TIME"]),
    ("services: {web: {networks: {front: {aliases: [a, c]}}}}\nnetworks: {front: {}}", "networks", {"front": {"aliases": ["a", "b", "c"]}}),
    # !reset removes, !override replaces without merging
    ("services: {web: {ports: !reset []}}", "ports", None),
    ("services: {web: {environment: {A: !reset null}}}", "environment", {"B": "2"}),
    ("services: {web: {ports: !override ['7000:70']}}", "ports", [{"target": 70, "published": "7000", "protocol": "tcp", "mode": "ingress"}]),
    ("services: {web: {environment: !override {Z: '9'}}}", "environment", {"Z": "9"}),
]


@pytest.mark.parametrize("override, key, expected", MERGES)
def test_merge_files(load, project_dir, override, key, expected):
    web = merged(load, override)
    if key == "build":
        expected = {"context": str(project_dir / "src"), "dockerfile": "Dockerfile.dev"}
    if key == "volumes":
        expected = [{k: (v.replace("<dir>", str(project_dir)) if isinstance(v, str) else v) for k, v in item.items()} for item in expected]
    assert web.get(key) == expected


def test_a_later_file_adds_services_and_resources(load):
    project = load(
        {"compose.yaml": BASE, "extra.yaml": "services: {cache: {image: redis, volumes: [c:/c]}}\nvolumes: {c: {driver: local}}"},
        main=["compose.yaml", "extra.yaml"],
    )
    assert sorted(project.services) == ["cache", "db", "web"]
    assert project.volumes["c"].driver == "local" and project.volumes["c"].name == "proj_c"


def test_override_file_is_found_with_the_main_one(project_dir, monkeypatch):
    (project_dir / "compose.yaml").write_text("services: {web: {image: a}}\n")
    (project_dir / "compose.override.yaml").write_text("services: {web: {image: b}}\n")
    monkeypatch.chdir(project_dir)
    project = load_project(None, environ={})
    assert project.services["web"].image == "b"
    assert [p.name for p in project.files] == ["compose.yaml", "compose.override.yaml"]


@pytest.mark.parametrize("name", ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"])
def test_default_file_names(project_dir, name):
    (project_dir / name).write_text("services: {web: {image: a}}\n")
    assert list(load_project(None, project_dir=project_dir, environ={}).services) == ["web"]


def test_no_stack_file_says_what_it_looked_for(project_dir):
    with pytest.raises(StackError, match=r"no stack file in .*: expected one of compose.yaml, compose.yml"):
        load_project(None, project_dir=project_dir, environ={})


EXTENDS = {
    "compose.yaml": """
        services:
          base:
            image: busybox
            user: root
            environment: {TZ: utc, PORT: "80"}
            volumes: ["common:/var/lib/backup/data:rw"]
          common:
            extends: base
            command: sleep 1
          cli:
            extends: {service: common}
            environment: [PORT=8080]
            volumes: ["cli-volume:/var/lib/backup/data:ro"]
          remote:
            extends: {file: lib/common.yaml, service: app}
            image: mine
        volumes: {common: {}, cli-volume: {}}
    """,
    "lib/common.yaml": """
        services:
          app:
            extends: {service: root}
            build: ./app
            env_file: app.env
            volumes: ["./data:/data"]
          root:
            image: root-image
            labels: {from: root}
    """,
    "lib/app.env": "FROM_FILE=yes\n",
}


def test_extends_in_the_same_file_chains(load):
    project = load(EXTENDS)
    cli = project.services["cli"]
    assert cli.image == "busybox" and cli.user == "root" and cli.command == ["sleep", "1"]
    assert cli.environment == {"TZ": "utc", "PORT": "8080"}
    assert [(v.source, v.target, v.read_only) for v in cli.volumes] == [("cli-volume", "/var/lib/backup/data", True)]
    assert cli.extends is None


def test_extends_from_another_file_keeps_its_paths(load, project_dir):
    remote = load(EXTENDS).services["remote"]
    lib = project_dir / "lib"
    assert remote.image == "mine" and remote.labels == {"from": "root"}
    assert remote.build.context == str(lib / "app")
    assert remote.volumes[0].source == str(lib / "data")
    assert remote.env_file[0].path == str(lib / "app.env")
    assert remote.environment == {"FROM_FILE": "yes"}


@pytest.mark.parametrize(
    "files, message",
    [
        ({"compose.yaml": "services:\n  a: {extends: b, image: x}\n  b: {extends: a, image: x}\n"}, "extends cycle: "),
        ({"compose.yaml": "services:\n  a: {extends: a}\n"}, "extends cycle: a -> a"),
        ({"compose.yaml": "services:\n  a: {extends: bb, image: x}\n  b: {image: x}\n"}, "extends unknown service 'bb'; did you mean 'b'?"),
        ({"compose.yaml": "services:\n  a: {extends: {service: b, file: nope.yaml}}\n"}, "cannot load the extended file: stack file not found:"),
        ({"compose.yaml": "services:\n  a: {extends: {service: b, fiel: x.yaml}}\n"}, "unknown key 'fiel' in extends; did you mean 'file'?"),
    ],
)
def test_extends_errors(load_errors, files, message):
    lines = load_errors(files)
    assert any(message in line for line in lines), lines


INCLUDE = {
    "compose.yaml": """
        include:
          - db/compose.yaml
          - path: ../shared/cache.yaml
            project_directory: ../shared
            env_file: ../shared/cache.env
        services:
          web:
            image: web
            depends_on: [db, cache]
    """,
    "db/compose.yaml": """
        services:
          db:
            image: "postgres:${PG_VERSION}"
            volumes: ["./init:/docker-entrypoint-initdb.d", "pg:/var/lib/postgresql/data"]
        volumes:
          pg: {}
    """,
    "db/.env": "PG_VERSION=15\n",
    "../shared/cache.yaml": "services:\n  cache:\n    image: redis:${REDIS}\n    env_file: cache.env\n",
    "../shared/cache.env": "REDIS=7\n",
}


def test_include_loads_each_file_as_its_own_project(load, project_dir):
    project = load(INCLUDE)
    assert sorted(project.services) == ["cache", "db", "web"]
    db = project.services["db"]
    assert db.image == "postgres:15"  # the included project's own .env
    assert db.volumes[0].source == str(project_dir / "db" / "init")  # its own directory
    assert project.volumes["pg"].name == "proj_pg"  # but named after the including project
    assert project.services["cache"].image == "redis:7"
    assert project.services["cache"].environment == {"REDIS": "7"}


def test_the_including_environment_wins_over_the_included_dotenv(load):
    assert load(INCLUDE, environ={"PG_VERSION": "16"}).services["db"].image == "postgres:16"


def test_include_conflict_is_an_error(load_errors):
    files = dict(INCLUDE)
    files["compose.yaml"] = "include: [db/compose.yaml]\nservices:\n  db: {image: other}\n"
    lines = load_errors(files)
    assert len(lines) == 1 and "include[0]: services.db is defined both here and in the included" in lines[0]


def test_include_cycle_is_an_error(load_errors):
    lines = load_errors({"compose.yaml": "include: [b.yaml]\nservices: {a: {image: x}}\n", "b.yaml": "include: [compose.yaml]\nservices: {b: {image: x}}\n"})
    assert any("include cycle" in line for line in lines), lines


PROFILES = """
services:
  foo: {image: foo}
  bar: {image: bar, profiles: [test]}
  baz: {image: baz, depends_on: [bar], profiles: [test]}
  zot: {image: zot, depends_on: [bar], profiles: [debug]}
  opt: {image: opt, profiles: [debug], depends_on: {bar: {condition: service_started, required: false}}}
"""


@pytest.mark.parametrize(
    "profiles, environ, active",
    [
        (None, {}, ["foo"]),
        (["test"], {}, ["bar", "baz", "foo"]),
        (["test", "debug"], {}, ["bar", "baz", "foo", "opt", "zot"]),
        (None, {"COMPOSE_PROFILES": "test,debug"}, ["bar", "baz", "foo", "opt", "zot"]),
        (["*"], {}, ["bar", "baz", "foo", "opt", "zot"]),
    ],
)
def test_profiles_select_services(load, profiles, environ, active):
    project = load({"compose.yaml": PROFILES}, profiles=profiles, environ=environ)
    assert sorted(project.services) == active
    assert project.profiles() == ["debug", "test"]


def test_a_dependency_disabled_by_profiles_is_an_error(load_errors):
    lines = load_errors({"compose.yaml": PROFILES}, profiles=["debug"])
    assert lines == [
        "compose.yaml:6:34: services.zot.depends_on.bar: depends on 'bar', which is disabled by its profiles (test); enable one with --profile"
    ]


def test_an_optional_dependency_disabled_by_profiles_is_dropped(load, load_errors):
    project = load({"compose.yaml": PROFILES.replace("  zot:", "  # zot:")}, profiles=["debug"])
    assert project.services["opt"].depends_on == {}
    # An optional dependency on a service that does not exist at all is still a mistake.
    text = "services:\n  a:\n    image: x\n    depends_on: {nope: {condition: service_started, required: false}}\n"
    assert load_errors({"compose.yaml": text}) == ["compose.yaml:4:18: services.a.depends_on.nope: depends on undefined service 'nope'"]


@pytest.mark.parametrize(
    "explicit, environ, top, expected",
    [
        ("given", {"COMPOSE_PROJECT_NAME": "env"}, "top", "given"),
        (None, {"COMPOSE_PROJECT_NAME": "env"}, "top", "env"),
        (None, {}, "top", "top"),
        (None, {}, None, "proj"),
    ],
)
def test_project_name_precedence(load, explicit, environ, top, expected):
    text = (f"name: {top}\n" if top else "") + "services: {web: {image: x}}\n"
    project = load({"compose.yaml": text}, project_name=explicit, environ=environ)
    assert project.name == expected
    assert project.networks["default"].name == f"{expected}_default"


def test_directory_name_is_normalized(tmp_path):
    directory = tmp_path / "My.Project_1"
    directory.mkdir()
    (directory / "compose.yaml").write_text("services: {web: {image: x}}\n")
    assert load_project([directory / "compose.yaml"], environ={}).name == "myproject_1"


def test_invalid_project_name_is_an_error(load_errors):
    assert load_errors({"compose.yaml": "services: {web: {image: x}}\n"}, project_name="Bad Name") == [
        "invalid project name 'Bad Name' (from -p): use lower-case letters, digits, '-' and '_', starting with a letter or digit"
    ]
