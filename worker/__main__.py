"""`python -m worker`: the operator's command line (worker/cli.py)."""

from worker.cli import main

raise SystemExit(main())
