import subprocess
import sys

import pytest

from orch.cli import main


def test_unknown_command_suggests_the_close_one(capsys):
    assert main(["comopse"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "orch: unknown command 'comopse'; did you mean 'compose'?"


def test_version_prints_and_exits_zero(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("orch version ")


@pytest.mark.parametrize("argv", [[], ["--help"]])
def test_usage(argv, capsys):
    code = main(argv)
    assert "usage: orch COMMAND" in capsys.readouterr().out
    assert code == (2 if not argv else 0)


def test_cli_startup_imports_stay_lean():
    # The dispatcher must not pull in the heavy libraries: the hot path is `orch run`.
    code = "import sys, orch.cli; heavy = {'pydantic', 'trio', 'httpx', 'yaml', 'networkx'} & set(sys.modules); print(sorted(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["create", "--cpus", "x", "busybox"], "orch: argument --cpus: invalid float value: 'x'; see 'orch create --help'"),
        (["network", "create"], "orch: the following arguments are required: name; see 'orch network create --help'"),
        (["compose", "config", "--bogus"], "orch: unrecognized arguments: --bogus; see 'orch compose config --help'"),
        (["volume", "create", "--nope"], "orch: unrecognized arguments: --nope; see 'orch volume create --help'"),
    ],
)
def test_misuse_of_any_command_is_one_line_and_exit_1(argv, expected, capsys):
    # Flags are checked before the agent is reached, so this needs no node. (`orch run` and
    # `orch build` send their command line to the agent, which checks it: see
    # tests/integration/build/test_cli.py for build's misuse.)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == expected + "\n"
