"""``python -m damagenet``: same as the ``damagenet`` console command."""

from damagenet.cli import entry

entry()
