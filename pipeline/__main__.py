"""``python -m pipeline``: same as the ``pipeline`` console command."""

from pipeline.cli import entry

entry()
