"""``python -m infra.local.stack up ...`` (see :mod:`infra.local.stack.cli`)."""

import sys

from .cli import main

sys.exit(main())
