"""``python -m damagenet``: same as the ``damagenet`` console command."""

import sys

from damagenet.cli import main

sys.exit(main())
