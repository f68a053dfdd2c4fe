"""How the stack files, the project directory and the COMPOSE_* variables are found, as
docker compose v2 finds them (compose-go cli/options.go; compose's e2e fixtures in
tests/data/compose/e2e, Apache-2.0, from docker/compose pkg/e2e/fixtures)."""

import shutil
import textwrap
from pathlib import Path

import pytest

from orch.spec import StackError, load_project
from orch.spec.loader import find_stack_files

E2E = Path(__file__).parents[2] / "data" / "compose" / "e2e"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def errors(**kwargs) -> list[str]:
    with pytest.raises(StackError) as info:
        load_project(**kwargs)
    return info.value.lines


@pytest.fixture
def fixtures(tmp_path):
    """A copy of compose's e2e fixtures, so that no test writes into the checkout."""
    shutil.copytree(E2E, tmp_path / "e2e")
    return tmp_path / "e2e"


def test_nested_dot_env_the_working_directorys_first_then_the_projects(fixtures):
    # compose's TestNestedDotEnv: compose.yaml is found in the parent of the working
    # directory; the working directory's .env wins over the project directory's.
    root = load_project(cwd=fixtures / "nested", environ={})
    assert root.services["echo"].command == ["echo", "root", "win=root"]
    sub = load_project(cwd=fixtures / "nested" / "sub", environ={})
    assert sub.project_dir == fixtures / "nested"
    assert sub.name == "nested"
    assert sub.services["echo"].command == ["echo", "root", "sub", "win=sub"]


def test_compose_file_and_profiles_from_dot_env(fixtures):
    # compose's TestComposeFileSetByDotEnv: the working directory's .env names the file and
    # the profiles; the project directory's .env fills IMAGE_TAG and keeps IMAGE_NAME.
    project = load_project(cwd=fixtures / "dotenv", environ={})
    assert project.project_dir == fixtures / "dotenv" / "development"
    assert project.services["backend"].image == "test:latest"
    assert project.services["test"].image == "enabled:profile"


def test_project_directory_is_where_the_default_file_is_looked_for(fixtures):
    # compose's TestComposeFileSetByProjectDirectory.
    project = load_project(project_dir=Path("dotenv/development"), cwd=fixtures, environ={})
    assert project.services["backend"].image == "backend:latest"
    assert "test" not in project.services  # COMPOSE_PROFILES was in the other .env


def test_compose_file_from_an_env_file_option(fixtures, tmp_path):
    # compose's TestComposeFileSetByEnvFile: --env-file names COMPOSE_FILE and the profiles.
    env = tmp_path / "vars.env"
    env.write_text("COMPOSE_FILE=dotenv/development/compose.yaml\nIMAGE_NAME=test\nIMAGE_TAG=latest\nCOMPOSE_PROFILES=test\n")
    project = load_project(env_files=[env], cwd=fixtures, environ={})
    assert project.services["backend"].image == "test:latest"
    assert project.services["test"].image == "enabled:profile"


def test_compose_file_with_its_path_separator_and_the_os_environment_winning(tmp_path):
    write(tmp_path, {
        "a.yaml": "services: {web: {image: a}}\n",
        "b.yaml": "services: {web: {hostname: b}}\n",
        ".env": "COMPOSE_FILE=nothing.yaml\nCOMPOSE_PROJECT_NAME=fromdotenv\n",
    })
    project = load_project(cwd=tmp_path, environ={"COMPOSE_FILE": "a.yaml;b.yaml", "COMPOSE_PATH_SEPARATOR": ";"})
    assert (project.services["web"].image, project.services["web"].hostname) == ("a", "b")
    assert project.name == "fromdotenv"


def test_compose_env_files_is_the_env_file_options_default(tmp_path):
    write(tmp_path, {"compose.yaml": "services: {web: {image: '${A}-${B}'}}\n", "one.env": "A=1\n", "two.env": "B=2\n", ".env": "A=dot\nB=dot\n"})
    project = load_project(cwd=tmp_path, environ={"COMPOSE_ENV_FILES": "one.env,two.env"})
    assert project.services["web"].image == "1-2"
    project = load_project(cwd=tmp_path, environ={"COMPOSE_DISABLE_ENV_FILE": "true", "A": "os"})
    assert project.services["web"].image == "os-"


def test_the_default_names_in_composes_order_with_its_warning(tmp_path):
    for name in ("docker-compose.yaml", "docker-compose.yml", "compose.yml"):
        (tmp_path / name).write_text("services: {}\n")
    (tmp_path / "docker-compose.override.yaml").write_text("services: {}\n")
    (tmp_path / "compose.override.yml").write_text("services: {}\n")
    warnings: list[str] = []
    assert find_stack_files(tmp_path, warnings) == [tmp_path / "compose.yml", tmp_path / "compose.override.yml"]
    assert warnings == [
        f"found multiple config files with supported names: {tmp_path}/compose.yml, {tmp_path}/docker-compose.yml, {tmp_path}/docker-compose.yaml; using {tmp_path}/compose.yml",
        f"found multiple override files with supported names: {tmp_path}/compose.override.yml, {tmp_path}/docker-compose.override.yaml; using {tmp_path}/compose.override.yml",
    ]
    (tmp_path / "compose.yml").unlink()
    (tmp_path / "docker-compose.yml").unlink()
    assert find_stack_files(tmp_path / "deeper" / "still") == [tmp_path / "docker-compose.yaml", tmp_path / "compose.override.yml"]


def test_no_file_anywhere_up_is_one_line(tmp_path):
    lines = errors(cwd=tmp_path, environ={})
    assert lines == [f"no stack file in {tmp_path} or its parents: expected one of compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml; name one with -f FILE"]


def test_stdin_is_a_stack_file_whose_relative_paths_start_at_the_working_directory(tmp_path):
    write(tmp_path, {"work/app.env": "FROM=stdin-dir\n", "work/.env": "TAG=1.0\n"})
    text = "services:\n  web:\n    image: busybox:${TAG}\n    env_file: app.env\n    build: ./ctx\n"
    project = load_project(["-"], cwd=tmp_path / "work", stdin=text, environ={})
    web = project.services["web"]
    assert (web.image, web.environment, project.project_dir) == ("busybox:1.0", {"FROM": "stdin-dir"}, tmp_path / "work")
    assert web.build.context == str(tmp_path / "work" / "ctx")
    lines = errors(files=["-"], cwd=tmp_path, stdin="services:\n  web:\n    imgae: x\n", environ={})
    assert lines[0].startswith("<stdin>:3:5: services.web.imgae: unknown key")


def test_missing_env_file_fails_only_the_services_that_need_it(fixtures):
    # compose's TestUnusedMissingEnvFile: serviceB's env file does not exist.
    stack = fixtures / "env_file" / "compose.yaml"
    project = load_project([stack], environ={}, lazy_env_files=True)
    project.require_env(["serviceA"])
    with pytest.raises(StackError) as info:
        project.require_env(["serviceA", "serviceB"])
    assert info.value.lines == [f"{stack}:8:9: services.serviceB.env_file[0]: env file not found: /doesnotexist/.env"]
    with pytest.raises(StackError):
        project.require_env()
    # Without lazy_env_files (the default), the load itself fails, as `config` does.
    assert errors(files=[stack], environ={}) == info.value.lines


def test_optional_env_files_are_skipped(tmp_path):
    write(tmp_path, {"compose.yaml": "services:\n  web:\n    image: x\n    env_file:\n      - path: ./absent.env\n        required: false\n      - path: ./here.env\n", "here.env": "A=1\n"})
    assert load_project(cwd=tmp_path, environ={}).services["web"].environment == {"A": "1"}


@pytest.mark.parametrize("restart, environ", [("''", {}), ("${POLICY}", {}), ("${POLICY:-}", {"POLICY": ""})])
def test_an_empty_restart_is_no_policy(tmp_path, restart, environ):
    write(tmp_path, {"compose.yaml": f"services:\n  web:\n    image: x\n    restart: {restart}\n"})
    assert load_project(cwd=tmp_path, environ=environ).services["web"].restart is None


@pytest.mark.parametrize(
    "services, where",
    [
        ("a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}", "compose.yaml:2:30: services.a.depends_on.b: dependency cycle: a -> b -> a"),
        ("a: {image: x, links: ['c:alias']}\n  b: {image: x, depends_on: {a: {condition: service_started}}}\n  c: {image: x, volumes_from: [b]}",
         "compose.yaml:2:25: services.a.links[0]: dependency cycle: a -> c -> b -> a"),
        ("a: {image: x, network_mode: 'service:a2'}\n  a2: {image: x, depends_on: [a]}", "compose.yaml:2:31: services.a.network_mode: dependency cycle: a -> a2 -> a"),
    ],
)
def test_a_dependency_cycle_is_named_where_it_closes(tmp_path, services, where):
    write(tmp_path, {"compose.yaml": f"services:\n  {services}\n"})
    lines = errors(cwd=tmp_path, environ={})
    assert [line.replace(f"{tmp_path}/", "") for line in lines] == [where + "; remove one of these references"]


def test_a_missing_include_names_the_include_entry(tmp_path):
    write(tmp_path, {
        "compose.yaml": "include:\n  - gone.yaml\n  - path: [ok.yaml, also-gone.yaml]\n  - path: ok.yaml\n    env_file: none.env\nservices: {}\n",
        "ok.yaml": "services: {web: {image: x}}\n",
    })
    lines = [line.replace(f"{tmp_path}/", "") for line in errors(cwd=tmp_path, environ={})]
    assert lines == [
        "compose.yaml:2:5: include[0].path: included file not found: gone.yaml",
        "compose.yaml:3:21: include[1].path[1]: included file not found: also-gone.yaml",
        "compose.yaml:5:15: include[2].env_file: env file not found: none.env",
    ]
