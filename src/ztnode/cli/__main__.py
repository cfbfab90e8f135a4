"""``python -m ztnode.cli``: the same as the ``ztnode`` command."""

import sys

from ztnode.cli.main import main

sys.exit(main())
