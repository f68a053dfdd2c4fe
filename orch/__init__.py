"""orch: a declarative multi-container orchestrator on real Linux containers."""

__version__ = "0.1.0"
