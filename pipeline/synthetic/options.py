"""What ``pipeline synthetic`` can be asked for, importable without the renderer.

The command line needs these at parse time; keeping them apart from :mod:`.town` keeps
``pipeline --help`` from loading geopandas, rasterio and scipy.
"""

from __future__ import annotations

DEFAULT_MAX_SIZE_KM = 5.0
MODES = ("realistic", "easy")
DEFAULT_MODE = "realistic"
