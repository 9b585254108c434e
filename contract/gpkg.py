"""GeoPackages with reproducible bytes.

GDAL stamps every GeoPackage table it writes with the current time (``gpkg_contents.
last_change``), so the same features written twice differ. Pinning ``OGR_CURRENT_DATE`` while
writing keeps the promise that the same inputs give byte-identical outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyogrio

#: The time stamped into GeoPackages when no better date (e.g. an acquisition date) is known.
FIXED_TIME = "2000-01-01T00:00:00Z"


@contextmanager
def pinned_ogr_time(stamp: str = FIXED_TIME) -> Iterator[str]:
    """While inside, GDAL writes ``stamp`` wherever it would write the current time."""
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
    try:
        yield stamp
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
