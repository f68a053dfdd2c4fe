"""Every example stack and every real-world stack loads, and orch's normalized output is a
valid compose file by the Compose Specification's own JSON schema."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orch.spec import load_project
from orch.spec.units import parse_duration

ROOT = Path(__file__).parents[3]
DATA = ROOT / "tests" / "data" / "compose"
SCHEMA = json.loads((DATA / "compose-spec.json").read_text())

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("duration", raises=ValueError)
def _is_duration(value) -> bool:
    # compose-go's schema loader adds a "duration" format (Go's time.ParseDuration).
    return not isinstance(value, str) or parse_duration(value) >= 0


def validate(stack: dict) -> None:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=FORMATS)
    problems = sorted(validator.iter_errors(stack), key=lambda e: list(e.absolute_path))
    assert not problems, "\n".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in problems)


EXAMPLES = sorted((ROOT / "examples" / "stacks").glob("**/*.y*ml"))
REALWORLD = sorted((DATA / "realworld").glob("*/compose.yaml"))


KITCHEN_SINK = DATA / "kitchen-sink" / "compose.yaml"


def test_every_service_key_of_the_schema_is_accepted_with_a_valid_value():
    raw = yaml.safe_load(KITCHEN_SINK.read_text())
    validate(raw)  # the test file itself is a valid compose file
    used = {key for service in raw["services"].values() for key in service}
    assert used >= set(SCHEMA["definitions"]["service"]["properties"])
    project = load_project([KITCHEN_SINK], environ={}, profiles=["all"])
    stack = project.to_dict()
    validate(stack)
    assert stack["services"]["everything"]["x-extra"] == "kept"
    assert stack["models"] == {"llm": {"model": "ai/smollm2"}}
    unsupported = project.unsupported()
    assert "services.everything.cpu_shares" in unsupported and "models" in unsupported
    assert not any(path.endswith((".image", ".ports", ".healthcheck", ".depends_on")) for path in unsupported)


def test_there_are_stacks_to_check():
    assert EXAMPLES and len(REALWORLD) >= 5


@pytest.mark.parametrize("path", EXAMPLES + REALWORLD, ids=lambda p: str(p.relative_to(ROOT)))
def test_stack_loads_and_its_normalized_form_is_valid_compose(path):
    project = load_project([path], environ={}, profiles=["*"])
    assert project.services
    stack = project.to_dict()
    validate(stack)
    # The output is itself a stack file orch reads back to the same thing.
    again = load_project_from_dict(project.to_dict(escape_dollars=True), path.parent)
    assert again.to_dict() == stack


def load_project_from_dict(stack: dict, project_dir: Path):
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "compose.yaml"
        out.write_text(yaml.safe_dump(stack, sort_keys=False))
        return load_project([out], project_dir=project_dir, environ={}, profiles=["*"])


def test_the_schema_rejects_what_it_should():
    # A guard that the validation above has teeth.
    with pytest.raises(AssertionError, match="services.web"):
        validate({"services": {"web": {"image": "x", "ports": [{"target": "x", "bogus": 1}]}}})


def test_realworld_stacks_are_read_as_their_authors_meant(monkeypatch):
    django = load_project([DATA / "realworld" / "django" / "compose.yaml"], environ={"TAG": "v2"})
    assert sorted(django.services) == ["db", "migrate", "nginx", "redis", "web", "worker"]  # beat needs a profile
    assert django.services["worker"].image == "shop/web:v2"
    assert django.services["web"].environment["SECRET_KEY"] == "dev-secret"
    assert django.services["nginx"].depends_on["migrate"].condition == "service_completed_successfully"
    assert django.services["db"].healthcheck.start_interval == 1.0

    wordpress = load_project([DATA / "realworld" / "wordpress" / "compose.yaml"], environ={})
    assert wordpress.services["wordpress"].ports[0].published == "8000"
    assert wordpress.services["wordpress"].secrets[0].mode == 0o440
    assert wordpress.services["wordpress"].depends_on["db"].restart is True

    traefik = load_project([DATA / "realworld" / "traefik" / "compose.yaml"], environ={})
    assert traefik.name == "edge" and traefik.networks["proxy"].name == "traefik-proxy"
    assert traefik.services["traefik"].labels["traefik.http.middlewares.auth.basicauth.users"] == "admin:$apr1$xyz$hash"
    assert traefik.services["blog"].networks["proxy"].ipv4_address == "172.28.0.20"

    elk = load_project([DATA / "realworld" / "elk" / "compose.yaml"], environ={})
    es = elk.services["elasticsearch"]
    assert es.ulimits["memlock"].soft == -1 and es.ulimits["nproc"].hard == 4096
    assert es.deploy.resources.limits.memory == 2 << 30 and es.stop_grace_period == 90.0
    assert [p.target for p in elk.services["logstash"].ports] == [5044, 5000, 5001, 9600]
    assert "services.elasticsearch.logging" in elk.unsupported()

    monitoring = load_project([DATA / "realworld" / "monitoring" / "compose.yaml"], environ={})
    assert monitoring.services["node-exporter"].network_mode == "host"
    assert "node-exporter" not in [n for s in monitoring.services.values() for n in s.networks]
    assert monitoring.configs["grafana_datasources"].content.startswith("apiVersion: 1")
