"""``python -m pipeline``: same as the ``pipeline`` console command."""

import sys

from pipeline.cli import main

sys.exit(main())
