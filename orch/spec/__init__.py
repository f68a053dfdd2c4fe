"""The stack-file front end: compose-compatible files in, a validated `Project` out.

    from orch.spec import load_project
    project = load_project([Path("compose.yaml")], profiles=["debug"])
    project.services["web"].depends_on   # dict[str, DependsOn]

`load_project` finds, parses (with positions), interpolates, merges, extends, includes,
validates and normalizes; see orch/spec/loader.py for the steps. Every problem in the files is
collected and raised as one `StackError` whose lines read `FILE:LINE:COL: key.path: message`.

Importing this package is cheap: pydantic and yaml are imported on the first `load_project`.
"""

from orch.spec.errors import Mark, StackError

__all__ = ["Mark", "StackError", "load_project"]


def load_project(files=None, **kwargs):
    """See `orch.spec.loader.load_project` (the signature and the steps are documented there)."""
    from orch.spec.loader import load_project as load

    return load(files, **kwargs)
