"""``python -m twinsim``: the same as the ``twinsim`` command."""

import sys

from twinsim.cli import main

sys.exit(main())
