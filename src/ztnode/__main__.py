"""``python -m ztnode`` runs the command line."""

import sys

from ztnode.cli import main

sys.exit(main())
