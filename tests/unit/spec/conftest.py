"""Helpers for orch.spec's tests: write stack files into a temporary project and load them."""

import textwrap
from pathlib import Path

import pytest

from orch.spec import StackError, load_project


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def project_dir(tmp_path):
    directory = tmp_path / "proj"
    directory.mkdir()
    return directory


@pytest.fixture
def load(project_dir):
    """load(files, main=['compose.yaml'], **kwargs) -> Project; environ defaults to {}."""

    def _load(files: dict[str, str], main: list[str] | None = None, **kwargs):
        write_files(project_dir, files)
        kwargs.setdefault("environ", {})
        names = main or [next(iter(files))]
        return load_project([project_dir / n for n in names], **kwargs)

    return _load


@pytest.fixture
def load_errors(load, project_dir):
    """load_errors(files, ...) -> the StackError's lines, with the project directory as '.'."""

    def _errors(files: dict[str, str], main: list[str] | None = None, **kwargs) -> list[str]:
        with pytest.raises(StackError) as info:
            load(files, main, **kwargs)
        return [line.replace(f"{project_dir}/", "") for line in info.value.lines]

    return _errors
