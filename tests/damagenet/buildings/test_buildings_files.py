"""Your own footprints, your own ids: every attribute comes through, and a big file is read
only where it meets the map."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from support.building_servers import (
    UTM,
    geohash_order,
    map_box_utm,
    town,
    write_geoparquet,
    write_map,
)

from damagenet.buildings.aggregate import AggregateOptions, aggregate
from damagenet.buildings.fetch import MARGIN_M


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    frame = town().to_crs(UTM)
    return root, frame, write_map(root / "testtown_pwtt.tif", "t")


def near_map(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Footprints whose envelope meets the map's box plus the read margin (what a bbox read
    returns)."""
    left, bottom, right, top = map_box_utm()
    area = shapely.box(left - MARGIN_M, bottom - MARGIN_M, right + MARGIN_M, top + MARGIN_M)
    return frame.envelope.intersects(area).to_numpy()


def run(map_path, buildings, out, **kw):
    summary = aggregate(map_path, buildings, out, AggregateOptions(progress=False, **kw))
    return summary, gpd.read_file(out, layer="buildings")


def test_every_attribute_and_id_comes_through_with_clashes_prefixed(place, tmp_path):
    root, frame, t_map = place
    own = frame.assign(
        asset_ref=[f"KYIV-{n:05d}" for n in frame.n],  # the user's own id
        status=np.where(frame.n % 2 == 0, "inspected", "not inspected"),  # clashes with ours
        area_m2=np.round(frame.area, 1),
        zone_id="their district",
        lon=1.0,
        floors=(frame.n % 7 + 1).astype("int32"),
        survey_date=pd.Timestamp("2024-03-01"),
    )
    own.to_file(tmp_path / "own.gpkg", layer="buildings")
    summary, b = run(t_map, tmp_path / "own.gpkg", tmp_path / "o" / "agg.gpkg")
    assert summary["id_column"] is None  # no known id column: features numbered, all kept
    for col in ("asset_ref", "floors", "survey_date", "height", "n"):
        assert col in b.columns, col
    for col in ("status", "area_m2", "zone_id", "lon"):
        assert f"src_{col}" in b.columns, col
    assert set(b.status) <= {"ok", "partial", "nodata", "outside map"}  # ours
    assert set(b.src_status) == {"inspected", "not inspected"}  # theirs
    back = own.set_index("asset_ref").loc[b.asset_ref]
    np.testing.assert_allclose(b.src_area_m2, back.area_m2)
    csv = pd.read_csv(tmp_path / "o" / "agg_buildings.csv")
    assert {"asset_ref", "src_status", "src_zone_id", "survey_date"} <= set(csv.columns)
    assert list(csv.asset_ref) == list(b.asset_ref)


def test_known_id_column_becomes_building_id(place, tmp_path):
    root, frame, t_map = place
    sub = frame[near_map(frame)].assign(osm_id=lambda f: [f"way/{n}" for n in f.n])
    sub.to_file(tmp_path / "osm.fgb")
    summary, b = run(t_map, tmp_path / "osm.fgb", tmp_path / "o" / "agg.gpkg")
    assert summary["id_column"] == "osm_id" and "osm_id" not in b.columns
    assert set(b.building_id) == set(sub.osm_id)


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb", ".parquet", ".geojson", ".csv"])
def test_only_footprints_near_the_map_are_read(place, tmp_path, suffix):
    root, frame, t_map = place
    path = tmp_path / f"region{suffix}"
    if suffix == ".parquet":  # spatially sorted row groups with a bbox covering, as published
        ll = frame.centroid.to_crs(4326)
        order = geohash_order(ll.x.to_numpy(), ll.y.to_numpy())
        write_geoparquet(frame.iloc[order], path, group_rows=100)
    elif suffix == ".csv":
        pd.DataFrame({"n": frame.n, "geometry": frame.geometry.to_wkt()}).to_csv(path)
    else:
        frame.to_file(path)
    crs = {"buildings_crs": UTM} if suffix == ".csv" else {}
    summary, b = run(t_map, path, tmp_path / "o" / "agg.gpkg", **crs)
    expected = near_map(frame)
    assert summary["buildings"] == expected.sum() < len(frame) / 3
    assert set(b.n) == set(frame.n[expected])
    if suffix == ".parquet":
        read, total = summary["row_groups_read"]
        assert read < total / 2


def test_bbox_read_in_another_crs(place, tmp_path):
    root, frame, t_map = place
    frame.to_crs(4326).to_file(tmp_path / "ll.gpkg")
    summary, b = run(t_map, tmp_path / "ll.gpkg", tmp_path / "o" / "agg.gpkg")
    near = near_map(frame)
    # the box, reprojected with densified edges, covers at least what the UTM box does
    assert set(frame.n[near]) <= set(b.n) and len(b) < len(frame) / 2
    assert summary["buildings_read_box"][0] < 31  # degrees: the box in the file's CRS
