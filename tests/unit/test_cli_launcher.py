"""The `orch` launcher (orch/cli/launcher.py): Python without `site`, which orch.cli runs itself
for the commands that need site-packages."""

import subprocess
import sys

from orch.cli import launcher


def test_launcher_starts_python_without_site_and_commands_still_find_their_libraries(tmp_path):
    path = tmp_path / "orch"
    assert launcher.main([str(path)]) == 0
    text = path.read_text()
    assert text.startswith(f"#!{sys.executable} -S\n")
    assert path.stat().st_mode & 0o111
    # A command that needs pydantic and yaml (site-packages) works from the launcher.
    stack = tmp_path / "compose.yaml"
    stack.write_text("services:\n  web:\n    image: busybox\n")
    out = subprocess.run([str(path), "compose", "-f", str(stack), "config", "--services"], capture_output=True, text=True, cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, "web\n")
    # `run` does its work without site: the client imports no site-packages module.
    probe = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import orch.cli.fastrun; "
                            "print('site' in sys.modules, sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'trio', 'yaml')))",
                            text.split("sys.path.insert(0, ")[1].split(")")[0].strip("'")], capture_output=True, text=True)
    assert probe.stdout.split("\n")[0] == "False []"


def test_launcher_usage_is_one_line_and_exit_2(capsys):
    assert launcher.main([]) == 2
    assert capsys.readouterr().err.count("\n") == 1
