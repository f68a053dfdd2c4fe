"""The node agent with the build routes mounted, for the builder's CLI tests.

orch/node/agent/app.py collects a fixed list of route modules; until routes_build is in that
list this module adds it and runs the real agent: `python -m tests.integration.build.agent_with_build`.
"""

import orch.node.agent.app as app

if "routes_build" not in app.ROUTE_MODULES:
    app.ROUTE_MODULES = tuple(app.ROUTE_MODULES) + ("routes_build",)

if __name__ == "__main__":
    raise SystemExit(app.main())
