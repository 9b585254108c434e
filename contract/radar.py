"""The Sentinel-1 radar store: what ``pipeline radar`` writes and ``damagenet pwtt`` reads.

One AOI's backscatter time series on the AOI's own 10 m grid, one Zarr store per AOI. Both
packages agree on it here, once, so neither re-spells a variable, coordinate or attribute name.

Layout (an ``xarray.Dataset``, CF conventions, readable by ``xarray``/``rioxarray``):

- data variables :data:`POLARISATIONS` (``vv``, ``vh``): float32, dims ``(time, y, x)``,
  calibrated backscatter in **linear power** (never dB, never amplitude), NaN where there is
  no observation; ``grid_mapping`` names :data:`GRID_MAPPING`; chunked one acquisition by
  :data:`CHUNK` x :data:`CHUNK` pixels.
- coordinates: ``time`` (acquisition start, UTC, ``datetime64[ns]``), ``y`` and ``x`` (pixel
  centres in the grid's CRS, metres), and per time :data:`ORBIT` (int16 relative orbit),
  :data:`ORBIT_STATE` (``ascending`` / ``descending``), :data:`PLATFORM` (``sentinel-1a`` ...).
- global attributes: :data:`ATTR_CALIBRATION` (one of :data:`CALIBRATIONS`),
  :data:`ATTR_PRE` and :data:`ATTR_POST` (the date windows, ``YYYY-MM-DD/YYYY-MM-DD``, end
  inclusive), :data:`ATTR_SOURCE`, :data:`ATTR_AOI`, ``units`` = :data:`UNITS`.

Beside the store, :func:`items_record_path` is the JSON record of every item or file used.
"""

from __future__ import annotations

from pathlib import Path

#: Polarisation variables, in the order tests and maps use them.
POLARISATIONS: tuple[str, ...] = ("vv", "vh")
#: Per-acquisition coordinates (dimension ``time``).
ORBIT = "relative_orbit"
ORBIT_STATE = "orbit_state"
PLATFORM = "platform"
ORBIT_STATES: tuple[str, ...] = ("ascending", "descending")
#: Name of the CF grid-mapping variable (rioxarray's default).
GRID_MAPPING = "spatial_ref"
#: Global attributes.
ATTR_CALIBRATION = "calibration"
ATTR_PRE = "pre_window"
ATTR_POST = "post_window"
ATTR_SOURCE = "source"
ATTR_AOI = "aoi"
#: Radiometric calibrations a store may hold: radiometrically terrain-corrected gamma0
#: (Planetary Computer ``sentinel-1-rtc``, RTC GeoTIFFs) or ellipsoid sigma0 (GRD calibrated
#: with its annotation). PWTT was published on sigma0; both are linear power.
GAMMA0_RTC = "gamma0_terrain_corrected"
SIGMA0 = "sigma0"
CALIBRATIONS: tuple[str, ...] = (GAMMA0_RTC, SIGMA0)
UNITS = "linear power"
#: Spatial chunk size of the store (pixels a side).
CHUNK = 512
#: The war's start: the default pre window is the twelve months before it.
WAR_START = "2022-02-24"


def items_record_path(store: Path) -> Path:
    """The JSON record of what a store was built from, beside it (``<aoi>.zarr`` ->
    ``<aoi>.items.json``)."""
    return store.with_name(store.name.removesuffix(".zarr") + ".items.json")
