"""``python -m xbench`` (and ``torchrun -m xbench``) runs the command line."""
import sys

from .cli import main

sys.exit(main())
