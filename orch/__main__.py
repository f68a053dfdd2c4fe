from orch.cli import main

raise SystemExit(main())
