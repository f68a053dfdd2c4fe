"""The agent's program: the node's own API and, beside it, the doors that serve other APIs on
its operations (docker.sock: orch.dockerapi). This module composes them, which is why it alone
of the agent may import orch.dockerapi (tests/unit/test_import_rules.py)."""

from orch.dockerapi.door import serve as docker_door
from orch.node.agent.app import main

raise SystemExit(main(doors=[docker_door]))
