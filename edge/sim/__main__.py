"""``python -m edge.sim``: the same as the ``twinsim`` command."""

import sys

from edge.sim.cli import main

sys.exit(main())
