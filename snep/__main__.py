"""``python -m snep``: the ``snep`` command (snep.cli), for a checkout without the script."""

import sys

from snep.cli import main

sys.exit(main())
