"""The cluster's API (orch/cluster/routes.py: /swarm, /nodes, /services, /tasks, /stacks),
served by the agent like its own routes. Importing it loads starlette only; orch.cluster's
modules load when a cluster request first comes."""

from orch.cluster.routes import ROUTES

__all__ = ["ROUTES"]
