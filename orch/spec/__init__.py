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

__all__ = ["Mark", "StackError", "load_project", "Project", "Service", "DependsOn", "PortSpec", "VolumeMount"]

# The models are imported when first named (`from orch.spec import Service`), not before.
_LAZY = {
    "Project": "orch.spec.project",
    "Service": "orch.spec.models",
    "DependsOn": "orch.spec.models",
    "PortSpec": "orch.spec.models",
    "VolumeMount": "orch.spec.models",
    "Healthcheck": "orch.spec.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'orch.spec' has no attribute {name!r}")


def load_project(files=None, **kwargs):
    """See `orch.spec.loader.load_project` (the signature and the steps are documented there)."""
    from orch.spec.loader import load_project as load

    return load(files, **kwargs)
