"""``python -m ttscale`` runs the CLI (same as the ``ttscale`` console script)."""

import sys

from ttscale.cli import main

sys.exit(main())
