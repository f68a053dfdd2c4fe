"""Property tests: whatever the text, the parsers answer or raise a one-line UserError."""

from hypothesis import given, settings
from hypothesis import strategies as st

from orch.build.dockerfile import dump, parse
from orch.build.dockerfile_checks import validate
from orch.build.dockerignore import parse_dockerignore
from orch.build.shell import process_word, process_words
from orch.errors import UserError

# Text made mostly of the characters that mean something to the parsers.
ALPHABET = st.sampled_from(list("\\`$'\"{}[]:-+?#%/<>=!*,. \t\nabcRUNFROMCOPYENV01éλ"))
SOURCE = st.text(ALPHABET, max_size=80)
KEYWORDS = st.sampled_from(["FROM a", "RUN", "COPY", "ADD", "ENV", "LABEL", "ARG", "CMD", "HEALTHCHECK", "ONBUILD RUN", "# escape=`", "SHELL", "RUNN"])
DOCKERFILE = st.lists(st.tuples(KEYWORDS, SOURCE).map(" ".join), max_size=6).map("\n".join)


def one_line_user_error(func, *args):
    try:
        return func(*args)
    except UserError as err:
        assert "\n" not in str(err), str(err)
        return None


@settings(max_examples=300, deadline=None)
@given(DOCKERFILE)
def test_dockerfile_parser_never_crashes(text):
    parsed = one_line_user_error(parse, text)
    if parsed is not None:
        assert dump(parsed).count("\n") == len(parsed.instructions)
        one_line_user_error(validate, parsed)


@settings(max_examples=300, deadline=None)
@given(SOURCE)
def test_shell_expansion_never_crashes(word):
    env = {"A": "x y", "B": "", "PWD": "/home"}
    one_line_user_error(process_word, word, env)
    one_line_user_error(process_words, word, env)


@settings(max_examples=300, deadline=None)
@given(SOURCE, st.lists(st.text(st.sampled_from(list("ab/.")), max_size=8), max_size=4))
def test_dockerignore_never_crashes(text, paths):
    matcher = one_line_user_error(parse_dockerignore, text)
    if matcher is not None:
        for path in paths:
            assert matcher.excludes(path) in (True, False)
