"""``python -m sim``: the same as ``gateway-sim``."""

import sys

from sim.cli import main

sys.exit(main())
