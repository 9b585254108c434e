"""Defaults of the patch, tile and dataset steps, in a module that imports nothing heavy.

``pipeline --help`` builds every subcommand's parser; if the parsers imported the libraries that
own these values (rasterio, scipy, pyproj), every ``--help`` and every start-up would pay for
them. The libraries import their values from here, so each value still has one home (as
``damagenet.defaults`` does for the models).
"""

from __future__ import annotations

#: Memory budget for reading the rasters of ``pipeline patches`` and ``pipeline tiles``, MiB.
DEFAULT_MEMORY_MB = 256.0
#: Patch side and stride of ``pipeline patches``, px (the study's 16 px, non-overlapping).
DEFAULT_PATCH_SIZE = 16
#: Share of a split's no-damage patches ``pipeline dataset`` draws from built-up ground.
DEFAULT_HARD_NEGATIVE_SHARE = 0.7
