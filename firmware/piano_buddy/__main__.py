"""``python -m piano_buddy``: the same as the ``piano-buddy`` command."""

import sys

from .cli import main

sys.exit(main())
