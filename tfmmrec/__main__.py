"""``python -m tfmmrec``: the ``tfmmrec`` command."""
import sys

from tfmmrec.cli import main

sys.exit(main())
