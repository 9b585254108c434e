"""Sentinel-1 radar time series on an AOI's own grid, without an account (issue 29).

:mod:`.series` holds one acquisition and the date windows, :mod:`.store` writes the Zarr
store of :mod:`contract.radar`, :mod:`.grd` calibrates GRD slices read through their ground
control points, :mod:`.stac` reads Planetary Computer (``sentinel-1-rtc``, else
``sentinel-1-grd``), :mod:`.safe` and :mod:`.rtc_files` read local SAFE products and calibrated
GeoTIFFs, :mod:`.synthetic` renders radar for the synthetic towns, :mod:`.build` chooses the
source and :mod:`.cli` is ``pipeline radar``.
"""

#: Where a series comes from (``--source``).
SOURCES = ("stac", "local", "synthetic")
#: Planetary Computer's STAC API, and its Sentinel-1 collections (``auto``: RTC, else GRD).
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
RTC, GRD = "sentinel-1-rtc", "sentinel-1-grd"
COLLECTIONS = ("auto", RTC, GRD)
#: Value scales of local RTC GeoTIFFs (``--rtc-scale``).
SCALES = ("power", "amplitude", "db")
