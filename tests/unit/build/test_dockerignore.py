""".dockerignore reading and matching, with docker's rules (moby/patternmatcher's cases)."""

import pytest

from orch.build.dockerignore import Matcher, go_clean, parse_dockerignore, read_patterns
from orch.errors import UserError

# (pattern, path, excluded)
SINGLE = [
    ("*", "fileutils.go", True),
    ("*.go", "fileutils.go", True),
    ("*.go", "dir/fileutils.go", False),
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**", "dir/file", True),
    ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("abc?def", "abc/def", False),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "axb", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a[[]b", "a[b", True),
    ("x[&~|]*", "x&&", True),
    ("x[\\]]y", "x]y", True),
    ("x]y*", "x]yz", True),
    # A pattern that matches a directory excludes what is inside it.
    ("build", "build/out/x.o", True),
    ("build/", "build/out/x.o", True),
    ("*/temp*", "sub/temporary/x", True),
    ("*/temp*", "a/b/temp", False),
    ("node_modules", "src/node_modules/x", False),
    ("**/node_modules", "src/node_modules/x", True),
    # Patterns are cleaned; a leading slash means the context's root.
    ("./a//b/../c", "a/c", True),
    ("/secret", "secret", True),
    ("/secret", "sub/secret", False),
    ("*.go", ".", False),
]


@pytest.mark.parametrize("pattern, path, excluded", SINGLE)
def test_one_pattern(pattern, path, excluded):
    # Through the file reader, as docker does it (ignorefile.ReadAll, then the matcher).
    assert parse_dockerignore(pattern + "\n").excludes(path) is excluded


# (patterns, path, excluded)
SEVERAL = [
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    ([], "any/path", False),
]


@pytest.mark.parametrize("patterns, path, excluded", SEVERAL)
def test_several_patterns(patterns, path, excluded):
    matcher = Matcher(patterns)
    assert matcher.excludes(path) is excluded
    assert matcher.has_exceptions is any(p.startswith("!") for p in patterns)


def test_reading_the_file():
    text = "\ufeff# comment\n  *.pyc  \n\n!  /keep.pyc\n/abs/./path/\n #not a comment\r\n!\n"
    assert read_patterns(text) == [(2, "*.pyc"), (4, "!keep.pyc"), (5, "abs/path"), (6, "#not a comment"), (7, "!")]


@pytest.mark.parametrize("text, message", [
    ("*.o\n!\n", '.dockerignore:2: illegal exclusion pattern "!"; write the path to re-include after it'),
    ("ok\n[\n", ".dockerignore:2: bad pattern '[': a '[' class is not closed with ']'"),
    ("a[]b\n", ".dockerignore:1: bad pattern 'a[]b': a '[' class holds an empty item or range"),
    ("a[z-a]\n", ".dockerignore:1: bad pattern 'a[z-a]': the range 'z-a' in a '[' class is backwards"),
    ("a\\\n", ".dockerignore:1: bad pattern 'a\\': a '\\' at the end escapes nothing"),
])
def test_bad_patterns(text, message):
    with pytest.raises(UserError) as err:
        parse_dockerignore(text)
    assert str(err.value) == message


def test_parse_and_match():
    matcher = parse_dockerignore("# build output\n**/*.o\n.git\n!important.o\n")
    assert [path for path in ["main.c", "x/y.o", "important.o", ".git/HEAD", ".gitignore"] if matcher.excludes(path)] == ["x/y.o", ".git/HEAD"]


@pytest.mark.parametrize("path, cleaned", [("", "."), (".", "."), ("a/./b/", "a/b"), ("a/../../b", "../b"), ("/../a", "/a"), ("//a//b", "/a/b"), ("a/..", ".")])
def test_go_clean(path, cleaned):
    assert go_clean(path) == cleaned
