"""``python -m precompile``: the ``precompile`` command (see ``precompile.cli``)."""
import sys

from precompile.cli import main

sys.exit(main())
