"""The distribution's version, read once from its installed metadata (``pyproject.toml``).

Both packages and every checkpoint's model card report this one number, so it cannot drift.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("damagenet-ukraine")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"
