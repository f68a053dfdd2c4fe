from orch.node.agent.app import main

raise SystemExit(main())
