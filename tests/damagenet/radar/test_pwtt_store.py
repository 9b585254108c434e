"""Radar stores written in the layout of :mod:`contract.radar`, and how ``damagenet pwtt`` reads
or refuses them. ``make_store`` lives in ``support.radar_stores``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from support.radar_stores import ORIGIN, POST, PRE, make_store, schedule, speckled

from contract import radar
from damagenet.errors import InputFileError
from damagenet.radar.store import open_radar_store


def small_store(tmp_path: Path, **kwargs) -> Path:
    rng = np.random.default_rng(0)
    times, orbits = schedule({21: (4, 2), 94: (3, 3)})
    shape = (len(times), 12, 9)
    return make_store(
        tmp_path / "town.zarr",
        speckled(rng, shape),
        speckled(rng, shape, 0.05),
        times,
        orbits,
        **kwargs,
    )


# zarr-python warns that consolidated metadata are not yet part of the Zarr 3 specification;
# the store is written that way on purpose, as xarray writes it by default
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_store_grid_windows_and_orbits(tmp_path, zarr_format):
    store = open_radar_store(small_store(tmp_path, zarr_format=zarr_format, chunk=4))
    assert (store.width, store.height, store.pixel_size) == (9, 12, 10.0)
    assert store.crs == CRS.from_epsg(32636)
    assert store.transform == Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])
    assert store.chunk_rows == 4
    assert str(store.pre) == PRE and str(store.post) == POST
    by_orbit = {s.orbit: (len(s.pre), len(s.post)) for s in store.orbits}
    assert by_orbit == {21: (4, 2), 94: (3, 3)}


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"units": "dB"}, "units='dB'"),
        ({radar.ATTR_CALIBRATION: "beta0"}, "calibration='beta0'"),
        ({radar.ATTR_PRE: "2021-02-24"}, "not a date window"),
        ({radar.ATTR_POST: "2021-06-01/2021-07-01"}, "does not start after"),
    ],
)
def test_store_attributes_refused(tmp_path, attrs, message):
    with pytest.raises(InputFileError, match=message):
        open_radar_store(small_store(tmp_path, attrs=attrs))


def test_store_in_db_refused(tmp_path):
    rng = np.random.default_rng(1)
    times, orbits = schedule({21: (3, 2)})
    db = 10 * np.log10(speckled(rng, (len(times), 6, 6)))
    path = make_store(tmp_path / "db.zarr", db, db, times, orbits)
    with pytest.raises(InputFileError, match="negative, as in dB"):
        open_radar_store(path)


def test_missing_store_and_not_a_store(tmp_path):
    with pytest.raises(InputFileError, match="no such radar store"):
        open_radar_store(tmp_path / "absent.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputFileError, match="not a readable Zarr"):
        open_radar_store(tmp_path / "empty.zarr")
