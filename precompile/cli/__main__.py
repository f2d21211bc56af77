"""``python -m precompile.cli``: the ``precompile`` command without the installed script."""
import sys

from precompile.cli import main

sys.exit(main())
