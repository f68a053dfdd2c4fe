"""Property tests: whatever bytes or YAML the loader is fed, the only exception that leaves it
is a StackError (a UserError, which the CLI prints as lines); never a traceback."""

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orch.errors import UserError
from orch.spec import StackError, load_project
from orch.spec.models import Service

DATA = Path(__file__).parents[2] / "data" / "compose"
SERVICE_KEYS = sorted(set(Service.model_fields) - {"extensions"})
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_text(data: bytes | str, extra: dict[str, str] | None = None):
    """Load `data` as compose.yaml in a fresh directory; return the Project or the StackError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        for name, text in (extra or {}).items():
            (Path(tmp) / name).write_text(text)
        try:
            return load_project([path], environ={"SET": "value", "EMPTY": ""})
        except StackError as err:
            assert err.lines and all(line and "\n" not in line for line in err.lines)
            assert isinstance(err, UserError)
            return err


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    load_text(data)


YAMLISH = st.text(alphabet=st.sampled_from(list("services:web image- []{}&*<>!|'\"$#\n\t ,.?0123456789xyz_%@`~\\")), max_size=200)


@FUZZ
@given(YAMLISH)
def test_random_yaml_like_text(text):
    load_text("services:\n  web:\n" + text)
    load_text(text)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["80:80", "8080-8081:80-81/udp", "./a:/b:ro", "v:/d", "1m30s", "512m", "${SET}", "${NOPE:?x}", "$$", "service:web", "CMD-SHELL", "host"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
keys = st.one_of(st.sampled_from(SERVICE_KEYS), st.sampled_from(["x-ext", "prots", "imagee"]))
service_defs = st.dictionaries(keys, values, max_size=6)
top_extra = st.dictionaries(st.sampled_from(["networks", "volumes", "secrets", "configs", "include", "name", "x-top", "bogus"]), values, max_size=3)


@FUZZ
@given(st.dictionaries(st.sampled_from(["web", "db", "api"]), st.one_of(service_defs, values), min_size=1, max_size=3), top_extra)
def test_random_service_trees(services, top):
    stack = {"services": services, **top}
    try:
        text = yaml.safe_dump(stack, allow_unicode=True)
    except yaml.YAMLError:
        return
    load_text(text)


@FUZZ
@given(st.sampled_from(sorted((DATA / "realworld").glob("*/compose.yaml"))), st.data())
def test_mutated_realworld_files(path, data):
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 5))
        insert = data.draw(st.text(alphabet=st.sampled_from(list(":-[]{}&*$ \n'\"x1")), max_size=3))
        text = text[:pos] + insert + text[pos + cut :]
    load_text(text, {".env.app": "A=1\n"})
