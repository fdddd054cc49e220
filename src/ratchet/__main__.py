"""`python -m ratchet`: the same command line as `ratchet`."""

import sys

from ratchet.cli import main

sys.exit(main())
