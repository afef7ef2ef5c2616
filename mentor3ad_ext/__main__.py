"""``python -m mentor3ad_ext``: the ``mentor3ad`` command line."""
import sys

from .cli import main

sys.exit(main())
