"""`python -m backend`: see backend/cli.py."""

import sys

from . import interrupts

interrupts.install()  # before the imports below, which take a while (numpy, the engines)

from .cli import main  # noqa: E402

sys.exit(main())
