"""The Dockerfile parser against buildkit's corpus, and tables of its finer rules."""

from pathlib import Path

import pytest

from orch.errors import UserError
from orch.build.dockerfile import DockerfileError, Heredoc, chomp_heredoc, dump, parse, parse_heredoc

DATA = Path(__file__).parents[2] / "data" / "buildkit"
CASES = sorted(p.name for p in (DATA / "testfiles").iterdir())
NEGATIVE = sorted(p.name for p in (DATA / "testfiles-negative").iterdir())


def test_the_corpus_is_all_there():
    assert len(CASES) == 22 and len(NEGATIVE) == 2


@pytest.mark.parametrize("case", CASES)
def test_dump_equals_buildkit_result(case):
    folder = DATA / "testfiles" / case
    parsed = parse((folder / "Dockerfile").read_text(encoding="utf-8"), filename=f"{case}/Dockerfile")
    assert dump(parsed) == (folder / "result").read_text(encoding="utf-8")


NEGATIVE_MESSAGES = {
    "empty_dockerfile": "empty_dockerfile/Dockerfile: file with no instructions",
    "env_no_value": "env_no_value/Dockerfile:3: ENV must have two arguments",
}


@pytest.mark.parametrize("case", NEGATIVE)
def test_negative_cases_are_refused_in_one_line(case):
    text = (DATA / "testfiles-negative" / case / "Dockerfile").read_text()
    with pytest.raises(DockerfileError) as err:
        parse(text, filename=f"{case}/Dockerfile")
    assert str(err.value) == NEGATIVE_MESSAGES[case]


def check(text, expected_dump):
    assert dump(parse(text)) == expected_dump


# (name, Dockerfile, dump)
DUMP_CASES = [
    ("flags with quotes and escapes", 'COPY --from=build --chown="a b" --chmod=07\\55 --link src dst\n', '(copy ["--from=build" "--chown=a b" "--chmod=0755" "--link"] "src" "dst")\n'),
    ("a quoted word ends the flags", 'COPY "--chown=a b" src dst\n', '(copy "\\"--chown=a" "b\\"" "src" "dst")\n'),
    ("bare -- ends the flags", "RUN --network=none -- --not-a-flag\n", '(run ["--network=none"] "--not-a-flag")\n'),
    ("mount flags", "RUN --mount=type=cache,target=/root/.cache --mount=type=bind,source=.,target=/src make\n", '(run ["--mount=type=cache,target=/root/.cache" "--mount=type=bind,source=.,target=/src"] "make")\n'),
    ("FROM platform and stage", "FROM --platform=linux/amd64 debian:12 AS build\n", '(from ["--platform=linux/amd64"] "debian:12" "AS" "build")\n'),
    ("exec and shell form", 'CMD ["a", "b"]\nCMD a b\nENTRYPOINT []\nSHELL ["/bin/bash", "-c"]\n', '(cmd "a" "b")\n(cmd "a b")\n(entrypoint)\n(shell "/bin/bash" "-c")\n'),
    ("NaN is not JSON", "CMD [NaN]\n", '(cmd "[NaN]")\n'),
    ("ENV forms", 'ENV A=1 B="two words" C=\nENV D old form value\n', '(env "A" "1" "=" "B" "\\"two words\\"" "=" "C" "" "=")\n(env "D" "old form value" "")\n'),
    ("ARG and LABEL", 'ARG V\nARG W=1 X\nLABEL "a.b"="c d"\n', '(arg "V")\n(arg "W=1" "X")\n(label "\\"a.b\\"" "\\"c d\\"" "=")\n'),
    ("ONBUILD with flags in the trigger", "ONBUILD COPY --from=x a b\n", '(onbuild (copy ["--from=x"] "a" "b"))\n'),
    ("unknown instruction kept empty", "FROM a\nRUNN make\n", '(from "a")\n(runn "")\n'),
    ("comments inside a continuation", "RUN a \\\n# comment\n  b \\\n\n  c\n", '(run "a   b   c")\n'),
    ("leading blanks and case", "  run   echo  hi  \nfrom x\n", '(run "echo  hi")\n(from "x")\n'),
    ("CRLF line ends", "FROM a\r\nRUN b \\\r\n c\r\n", '(from "a")\n(run "b  c")\n'),
    ("byte order mark", "\ufeffFROM a\n", '(from "a")\n'),
    ("backtick escape", "# escape=`\nFROM a\nRUN dir c:\\ `\n  /b\n", '(from "a")\n(run "dir c:\\\\   /b")\n'),
    ("directive after a blank line is a comment", "\n# escape=`\nRUN a `\nRUN b\n", '(run "a `")\n(run "b")\n'),
    ("heredoc body is not parsed", "RUN <<EOF\n# not a comment \\\nFROM x\nEOF\nUSER a\n", '(run "<<EOF")\n(user "a")\n'),
    ("HEALTHCHECK NONE", "HEALTHCHECK NONE\n", '(healthcheck "NONE")\n'),
]


@pytest.mark.parametrize("name, text, expected", DUMP_CASES, ids=[c[0] for c in DUMP_CASES])
def test_dump(name, text, expected):
    check(text, expected)


# (Dockerfile, heredocs of its last instruction)
HEREDOC_CASES = [
    ("RUN <<EMPTY\nEMPTY\n", [Heredoc("EMPTY", "")]),
    ("RUN 3<<EMPTY2\nEMPTY2\n", [Heredoc("EMPTY2", "", fd=3)]),
    ('RUN "<<NOHEREDOC"\n', []),
    ("RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n", [Heredoc("INDENT", "\tfoo\n\tbar\n")]),
    ("RUN <<-UNINDENT\n\tbaz\n\tquux\n\tUNINDENT\n", [Heredoc("UNINDENT", "\tbaz\n\tquux\n", chomp=True)]),
    ("RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n", [Heredoc("NOEXPAND", "\tdon't expand $NAME\n", expand=False, chomp=True)]),
    ("RUN <<COMMENT\n# internal\necho a # trailing\nCOMMENT\n", [Heredoc("COMMENT", "# internal\necho a # trailing\n")]),
    ("RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n", [Heredoc("MOUNT", "echo hello\n")]),
    ("COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n", [Heredoc("FILE1", "content 1\n"), Heredoc("FILE2", "content 2\n")]),
    ("COPY <<X <<Y /dest\nY\nX\nX\nY\n", [Heredoc("X", "Y\n"), Heredoc("Y", "X\n")]),
    ("RUN <<COMPLEX python3\nprint('hi')\nCOMPLEX\n", [Heredoc("COMPLEX", "print('hi')\n")]),
    ("COPY <<file.txt /dest\nhello\nfile.txt\n", [Heredoc("file.txt", "hello\n")]),
    ("RUN <<eo'f'\necho foo\neof\n", [Heredoc("eof", "echo foo\n", expand=False)]),
    ("RUN <<eo\\'f\necho foo\neo'f\n", [Heredoc("eo'f", "echo foo\n")]),
    ("RUN <<'e'o\\'f\necho foo\neo'f\n", [Heredoc("eo'f", "echo foo\n", expand=False)]),
    ("RUN <<'one two'\necho bar\none two\n", [Heredoc("one two", "echo bar\n", expand=False)]),
    ("RUN <<$EOF\n$EOF\n", [Heredoc("$EOF", "")]),
    ("RUN <<  EOF  > foo\nEOF\n", [Heredoc("EOF", "")]),
    ("ONBUILD RUN <<EOF\nx\nEOF\n", [Heredoc("EOF", "x\n")]),
    ('RUN ["<<EOF"]\n', []),
    ("USER <<INVALID\n", []),
]


@pytest.mark.parametrize("text, expected", HEREDOC_CASES)
def test_heredocs(text, expected):
    assert list(parse(text).instructions[-1].heredocs) == expected


@pytest.mark.parametrize("word, name", [("<<EOF", "EOF"), ("<<'EOF'", "EOF"), ('<<"EOF"', "EOF"), ("<<-EOF", "EOF"), ('<<EO"F"', "EOF"), ("<< EOF", "EOF"), ("<<- EOF", "EOF")])
def test_heredoc_words(word, name):
    assert parse_heredoc(word).name == name


@pytest.mark.parametrize("word", ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"])
def test_not_heredoc_words(word):
    assert parse_heredoc(word) is None


@pytest.mark.parametrize("word", ["<<'EOF", '<<"EOF', "<<EOF'", '<<EOF"'])
def test_bad_heredoc_words(word):
    with pytest.raises(UserError):
        parse_heredoc(word)


def test_unbalanced_quote_on_the_line_means_no_heredoc():
    # buildkit's heredoc detector gives up on a line its lexer cannot split.
    assert parse("RUN <<'EOF\n").instructions[0].heredocs == ()


def test_chomp():
    assert chomp_heredoc("\thello\n\t\tworld\n") == "hello\nworld\n"


def test_instruction_values():
    df = parse('# syntax=docker/dockerfile:1\n# check=skip=all\nFROM a\n\n# build it\nRUN --network=none \\\n  make \\\n  all\nCMD ["x"]\nENV K=v L=w\n')
    assert df.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}
    from_, run, cmd, env = df.instructions
    assert (from_.keyword, from_.args, from_.line, from_.end_line) == ("FROM", ("a",), 3, 3)
    assert (run.keyword, run.flags, run.args, run.line, run.end_line, run.json) == ("RUN", ("--network=none",), ("make   all",), 6, 8, False)
    assert run.original == "RUN --network=none   make   all"
    assert run.comments == ("build it",)
    assert (cmd.args, cmd.json) == (("x",), True)
    assert env.pairs == [("K", "v"), ("L", "w")]


def test_heredoc_lines_count():
    df = parse("FROM a\nRUN <<EOF\none\ntwo\nEOF\nUSER b\n")
    run, user = df.instructions[1:]
    assert (run.line, run.end_line, user.line) == (2, 5, 6)


def test_empty_continuation_is_a_warning():
    assert parse("RUN a \\\n\n b\n").warnings == ("Dockerfile:3: empty continuation line found in: RUN a  b",)


# (Dockerfile, one-line message)
ERROR_CASES = [
    ("", "Dockerfile: file with no instructions"),
    ("# only a comment\n\n", "Dockerfile: file with no instructions"),
    ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
    ("FROM a\nCMD [1, 2]\n", "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("FROM a\nLABEL a=b c\n", 'Dockerfile:2: Syntax error - can\'t find = in "c". Must be of the form: name=value'),
    ("FROM a\nRUN <<EOF\necho\n", "Dockerfile:2: unterminated heredoc 'EOF' (no line 'EOF' after line 2)"),
]


@pytest.mark.parametrize("text, message", ERROR_CASES)
def test_errors(text, message):
    with pytest.raises(DockerfileError) as err:
        parse(text)
    assert str(err.value) == message


def test_bytes_that_are_not_utf8_pass_through():
    parsed = parse(b"FROM a\nRUN echo \xff\xfe ok\n")
    assert dump(parsed) == '(from "a")\n(run "echo \\xff\\xfe ok")\n'
    assert parsed.instructions[1].args[0].encode("utf-8", "surrogateescape") == b"echo \xff\xfe ok"
