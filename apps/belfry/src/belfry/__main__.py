"""``python -m belfry``: the belfry command line (same as the ``belfry`` console script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
