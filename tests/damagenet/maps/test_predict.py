"""Damage maps (issue 8)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import geopandas as gpd
import matplotlib.image as mpimg
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point
from support.map_data import mean_blue, write_pair

from damagenet.cli import main
from damagenet.data.pairs import Normalisation
from damagenet.data.scene_pair import open_scene_pair
from damagenet.errors import DamagenetError
from damagenet.maps.predict import PredictOptions, predict_map
from damagenet.maps.quicklook import TRUE_COLOUR, true_colour
from damagenet.models.checkpoint import save_checkpoint
from damagenet.models.siamese_resnet import SiameseResNet


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    model = SiameseResNet("resnet18").eval()
    save_checkpoint(
        path,
        model,
        patch_size=16,
        norm=Normalisation([0.1] * 4, [0.05] * 4),
        threshold={"value": 0.5, "rule": "fixed"},
        history=[],
        dataset={"sha256": "0" * 64},
    )
    return path


def _read(path):
    """Band 1 and the raster's properties (read while the file is open)."""
    with rasterio.open(path) as src:
        info = SimpleNamespace(
            crs=src.crs,
            transform=src.transform,
            width=src.width,
            height=src.height,
            shape=src.shape,
            dtypes=src.dtypes,
            nodata=src.nodata,
            descriptions=src.descriptions,
            layout=src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
            colormap=src.colormap(1) if src.dtypes[0] == "uint8" else None,
            overviews=src.overviews(1),
            tags=src.tags(),
        )
        return src.read(1), info


def _brute_force(before, after, size, stride, scorer):
    _, h, w = before.shape
    rows = list(range(0, h - size + 1, stride))
    cols = list(range(0, w - size + 1, stride))
    rows += [h - size] if rows[-1] != h - size else []
    cols += [w - size] if cols[-1] != w - size else []
    total, count = np.zeros((h, w)), np.zeros((h, w))
    for r in rows:
        for c in cols:
            wb, wa = before[:, r : r + size, c : c + size], after[:, r : r + size, c : c + size]
            if (wb == 0).any() or (wa == 0).any():
                continue
            p = scorer(wb[None], wa[None])[0]
            total[r : r + size, c : c + size] += p
            count[r : r + size, c : c + size] += 1
    return total, count


@pytest.mark.parametrize("stride", [8, 5, 16])
def test_overlapping_windows_average_and_nodata(tmp_path, aoi_rasters, ckpt, stride):
    r = aoi_rasters["bucha"]
    out = tmp_path / "bucha_damage_prob.tif"
    predict_map(
        r["before"],
        r["after"],
        ckpt,
        out,
        PredictOptions(stride=stride, memory_mb=0.05, progress=False),
        scorer=mean_blue,
    )
    with rasterio.open(r["before"]) as b, rasterio.open(r["after"]) as a:
        before, after = b.read(), a.read()
        grid = (b.crs, b.transform, b.width, b.height)
    total, count = _brute_force(before, after, 16, stride, mean_blue)
    prob, src = _read(out)
    assert (src.crs, src.transform, src.width, src.height) == grid
    assert src.dtypes[0] == "float32" and src.nodata == -9999.0
    assert src.layout == "COG"
    covered = count > 0
    assert (prob[~covered] == -9999.0).all()
    assert np.allclose(prob[covered], total[covered] / count[covered], atol=1e-6)
    assert (~covered).any() and covered.mean() > 0.5


def test_outputs_styles_and_vectors(tmp_path, aoi_rasters, ckpt):
    r = aoi_rasters["irpin"]
    out = tmp_path / "maps" / "irpin_damage_prob.tif"
    summary = predict_map(
        r["before"],
        r["after"],
        ckpt,
        out,
        PredictOptions(stride=8, progress=False),
        labels=r["labels"],
        scorer=mean_blue,
    )
    maps = tmp_path / "maps"
    prob, psrc = _read(out)
    cls, csrc = _read(maps / "irpin_damage_class.tif")
    assert (csrc.crs, csrc.transform, csrc.shape) == (psrc.crs, psrc.transform, psrc.shape)
    assert csrc.dtypes[0] == "uint8" and csrc.nodata == 255
    assert csrc.colormap[1][:3] == (215, 25, 28)
    assert csrc.descriptions == ("damage_class",) and psrc.descriptions == ("damage_probability",)
    assert ((prob >= 0.5) == (cls == 1))[prob != -9999].all()
    assert (cls[prob == -9999] == 255).all()
    # the colour table lives in the GeoTIFF, the class names in its tags and QGIS style:
    # no GDAL sidecar beside any output (issue 31.8)
    assert csrc.colormap[255][3] == 0 and "1 damage" in csrc.tags["VALUES"]
    assert not list(maps.glob("*.aux.xml"))
    for name, band in (
        ("irpin_damage_prob.qml", "damage_probability"),
        ("irpin_damage_class.qml", "damage_class"),
        ("irpin_damage_agreement.qml", "agreement"),
    ):
        root = ET.parse(maps / name).getroot()
        assert root.tag == "qgis"
        renderer = root.find("./pipe/rasterrenderer")
        assert renderer is not None and renderer.get("band") == "1"
        assert root.find("./customproperties/Option/Option").get("value") == band
    gdf = gpd.read_file(maps / "irpin_damage_patches.gpkg", layer="damaged_patches")
    assert gdf.crs == psrc.crs and (gdf["probability"] >= 0.5).all()
    union = gdf.union_all()
    rows, cols = np.nonzero(cls == 1)
    t = psrc.transform
    for rr, cc in list(zip(rows, cols, strict=True))[:: max(1, len(rows) // 300)]:
        assert union.covers(Point(t.c + (cc + 0.5) * t.a, t.f + (rr + 0.5) * t.e))
    s = json.loads((maps / "irpin_damage_summary.json").read_text())
    assert s == json.loads(json.dumps(summary))
    assert s["threshold"] == 0.5 and s["damaged_area_km2"] == pytest.approx(
        (cls == 1).sum() * 100 / 1e6
    )
    assert 0 <= s["damaged_share_of_valid"] <= 1
    agree, asrc = _read(maps / "irpin_damage_agreement.tif")
    assert set(np.unique(agree)) <= {0, 1, 2, 3, 255}
    with rasterio.open(r["labels"]) as lab:
        labels = lab.read(1)
    assert (agree[labels == 255] == 255).all()
    m = s["patch_metrics"]
    assert m is not None and 0 < m["damaged"] < m["windows"]
    assert 0 <= m["damage_recall"] <= 1 and 0 <= m["damage_precision"] <= 1
    assert s["training_ground"]["status"] == "unknown"  # the checkpoint records none


def test_real_model_and_cli(tmp_path, aoi_rasters, ckpt, capsys):
    r = aoi_rasters["hostomel"]
    out = tmp_path / "hostomel_damage_prob.tif"
    assert (
        main(
            [
                "-q",
                "predict",
                "--before",
                str(r["before"]),
                "--after",
                str(r["after"]),
                "--ckpt",
                str(ckpt),
                "--out",
                str(out),
                "--stride",
                "16",
                "--tta",
                "--threshold",
                "0.3",
            ]
        )
        == 0
    )
    prob, _ = _read(out)
    valid = prob != -9999
    assert ((prob[valid] >= 0) & (prob[valid] <= 1)).all()


def test_refuses_bad_inputs(tmp_path, aoi_rasters, ckpt):
    r, other = aoi_rasters["bucha"], aoi_rasters["irpin"]
    out = tmp_path / "o" / "x_damage_prob.tif"
    with pytest.raises(DamagenetError, match="not on the grid"):
        predict_map(r["before"], other["after"], ckpt, out, PredictOptions(progress=False))
    three = tmp_path / "three.tif"
    with rasterio.open(r["after"]) as src:
        prof = dict(src.profile, count=3, driver="GTiff")
        with rasterio.open(three, "w", **prof) as dst:
            dst.write(src.read()[:3])
    with pytest.raises(DamagenetError, match="3 bands"):
        predict_map(r["before"], three, ckpt, out, PredictOptions(progress=False))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DamagenetError, match="cannot be written"):
        predict_map(
            r["before"],
            r["after"],
            ckpt,
            blocker / "m_damage_prob.tif",
            PredictOptions(progress=False),
        )

    def broken(before, after):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        predict_map(
            r["before"], r["after"], ckpt, out, PredictOptions(progress=False), scorer=broken
        )
    assert list((tmp_path / "o").iterdir()) == []  # no partial outputs


def test_big_map_has_overviews_colours_style_and_tags(tmp_path, ckpt):
    r = write_pair(tmp_path, 600, 520)
    out = tmp_path / "maps" / "big_damage_prob.tif"
    predict_map(
        r["before"],
        r["after"],
        ckpt,
        out,
        PredictOptions(stride=16, progress=False),
        labels=r["labels"],
        scorer=mean_blue,
    )
    maps = out.parent
    for name in ("big_damage_prob.tif", "big_damage_class.tif", "big_damage_agreement.tif"):
        _, src = _read(maps / name)
        assert src.overviews == [2, 4]  # 600 px -> 300 -> 150, below one 256 px block
        assert src.layout == "COG"
    # each class's colour in the GeoTIFF's own table; nodata transparent
    _, csrc = _read(maps / "big_damage_class.tif")
    assert csrc.colormap[1][:3] == (215, 25, 28) and csrc.colormap[255][3] == 0
    _, asrc = _read(maps / "big_damage_agreement.tif")
    assert [asrc.colormap[c][:3] for c in range(4)] == [
        (230, 230, 230),
        (26, 150, 65),
        (253, 174, 97),
        (44, 123, 182),
    ]
    assert not list(maps.glob("*.aux.xml"))
    # inputs named by path as given and by content hash
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["BEFORE"] == str(r["before"]) and tags["LABELS"] == str(r["labels"])
    assert tags["AFTER_SHA256"] == hashlib.sha256(r["after"].read_bytes()).hexdigest()[:16]
    assert tags["CHECKPOINT_SHA256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    assert tags["AOI"] == "bigtown"
    # GeoPackage 1.2 with its QGIS style stored as the layer's default
    gpkg = maps / "big_damage_patches.gpkg"
    with contextlib.closing(sqlite3.connect(gpkg)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
        name, column, qml, default = db.execute(
            "SELECT f_table_name, f_geometry_column, styleQML, useAsDefault FROM layer_styles"
        ).fetchone()
        geom = db.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = 'damaged_patches'"
        ).fetchone()[0]
    assert (name, column, default) == ("damaged_patches", geom, 1)
    root = ET.fromstring(qml)
    assert root.find("./renderer-v2").get("type") == "singleSymbol"
    assert (maps / "big_damage_patches.qml").read_text() == qml


def test_quicklook_shows_probability_over_true_colour_with_labels(tmp_path, ckpt):
    r = write_pair(tmp_path, 200, 240)
    out = tmp_path / "a" / "town_damage_prob.tif"
    summary = predict_map(
        r["before"],
        r["after"],
        ckpt,
        out,
        PredictOptions(stride=8, progress=False),
        labels=r["labels"],
        scorer=mean_blue,
    )
    png = tmp_path / "a" / "town_quicklook.png"
    assert summary["outputs"]["quicklook"] == str(png)
    image = mpimg.imread(png)
    # a 200 x 240 px map is drawn enlarged 3x (to at least 800 px a side), so it is readable
    assert image.ndim == 3 and image.shape[0] >= 3 * 200 and image.shape[1] >= 3 * 240
    cyan = (image[..., 0] < 0.2) & (image[..., 1] > 0.8) & (image[..., 2] > 0.8)
    assert cyan.sum() > 20  # label outlines drawn
    predict_map(
        r["before"],
        r["after"],
        ckpt,
        tmp_path / "b" / "town_damage_prob.tif",
        PredictOptions(stride=8, progress=False),
        scorer=mean_blue,
    )
    plain = mpimg.imread(tmp_path / "b" / "town_quicklook.png")
    assert not ((plain[..., 0] < 0.2) & (plain[..., 1] > 0.8) & (plain[..., 2] > 0.8)).any()


def test_true_colour_takes_red_green_blue_from_b04_b03_b02(tmp_path):
    r = write_pair(tmp_path, 64, 64)
    with rasterio.open(r["after"], "r+") as dst:
        dst.write(np.stack([np.full((64, 64), v, dtype=np.uint16) for v in (100, 200, 300, 400)]))
    scenes = open_scene_pair(r["before"], r["after"], None, 16)
    rgb = scenes.after_rgb((8, 8), TRUE_COLOUR)
    assert TRUE_COLOUR == ("B04", "B03", "B02")
    assert rgb.shape == (3, 8, 8) and rgb[:, 0, 0].tolist() == [300, 200, 100]
    assert true_colour(rgb).shape == (8, 8, 3)


def test_threshold_option_parse_error_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "predict",
                "--before",
                "b",
                "--after",
                "a",
                "--ckpt",
                "c",
                "--out",
                "o.tif",
                "--threshold",
                "1.5",
            ]
        )
    assert exc.value.code == 2
    assert "--threshold" in capsys.readouterr().err
