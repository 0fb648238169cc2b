"""`python -m worker`: the operator's command line (worker/cli/); the function never imports it."""

from worker.cli import main

raise SystemExit(main())
