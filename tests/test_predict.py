"""Damage maps (issue 8)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.geometry import Point

from damagenet.checkpoint import save_checkpoint
from damagenet.cli import main
from damagenet.data import Normalisation
from damagenet.errors import DamagenetError
from damagenet.model import SiameseResNet
from damagenet.predict import PredictOptions, predict_map


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    model = SiameseResNet("resnet18").eval()
    save_checkpoint(path, model, patch_size=16,
                    norm=Normalisation([0.1] * 4, [0.05] * 4),
                    threshold={"value": 0.5, "rule": "fixed"}, history=[],
                    dataset={"sha256": "0" * 64})
    return path


def mean_blue(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Stand-in model with a known output: the window's mean after-minus-before blue, scaled."""
    d = after[:, 0].astype(np.float64).mean(axis=(1, 2)) - before[:, 0].mean(axis=(1, 2))
    return np.clip(0.5 + d / 2000, 0, 1)


def _read(path):
    """Band 1 and the raster's properties (read while the file is open)."""
    with rasterio.open(path) as src:
        info = SimpleNamespace(
            crs=src.crs, transform=src.transform, width=src.width, height=src.height,
            shape=src.shape, dtypes=src.dtypes, nodata=src.nodata,
            descriptions=src.descriptions, layout=src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
            colormap=src.colormap(1) if src.dtypes[0] == "uint8" else None,
            overviews=src.overviews(1))
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
            wb, wa = before[:, r:r + size, c:c + size], after[:, r:r + size, c:c + size]
            if (wb == 0).any() or (wa == 0).any():
                continue
            p = scorer(wb[None], wa[None])[0]
            total[r:r + size, c:c + size] += p
            count[r:r + size, c:c + size] += 1
    return total, count


@pytest.mark.parametrize("stride", [8, 5, 16])
def test_overlapping_windows_average_and_nodata(tmp_path, aoi_rasters, ckpt, stride):
    r = aoi_rasters["bucha"]
    out = tmp_path / "bucha_damage_prob.tif"
    predict_map(r["before"], r["after"], ckpt, out,
                PredictOptions(stride=stride, memory_mb=0.05, progress=False),
                scorer=mean_blue)
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
    summary = predict_map(r["before"], r["after"], ckpt, out,
                          PredictOptions(stride=8, progress=False), labels=r["labels"],
                          scorer=mean_blue)
    maps = tmp_path / "maps"
    prob, psrc = _read(out)
    cls, csrc = _read(maps / "irpin_damage_class.tif")
    assert (csrc.crs, csrc.transform, csrc.shape) == (psrc.crs, psrc.transform, psrc.shape)
    assert csrc.dtypes[0] == "uint8" and csrc.nodata == 255
    assert csrc.colormap[1][:3] == (215, 25, 28)
    assert csrc.descriptions == ("damage_class",) and psrc.descriptions == ("damage_probability",)
    assert ((prob >= 0.5) == (cls == 1))[prob != -9999].all()
    assert (cls[prob == -9999] == 255).all()
    assert psrc.overviews == [] or all(f > 1 for f in psrc.overviews)
    aux = (maps / "irpin_damage_class.tif.aux.xml").read_text()
    assert "<Category>damage</Category>" in aux
    for name, band in (("irpin_damage_prob.qml", "damage_probability"),
                       ("irpin_damage_class.qml", "damage_class"),
                       ("irpin_damage_agreement.qml", "agreement")):
        root = ET.parse(maps / name).getroot()
        assert root.tag == "qgis"
        renderer = root.find("./pipe/rasterrenderer")
        assert renderer is not None and renderer.get("band") == "1"
        assert root.find("./customproperties/Option/Option").get("value") == band
    gdf = gpd.read_file(maps / "irpin_damage_patches.gpkg")
    assert gdf.crs == psrc.crs and (gdf["probability"] >= 0.5).all()
    union = gdf.union_all()
    rows, cols = np.nonzero(cls == 1)
    t = psrc.transform
    for rr, cc in list(zip(rows, cols, strict=True))[:: max(1, len(rows) // 300)]:
        assert union.covers(Point(t.c + (cc + 0.5) * t.a, t.f + (rr + 0.5) * t.e))
    s = json.loads((maps / "irpin_damage_summary.json").read_text())
    assert s == json.loads(json.dumps(summary))
    assert s["threshold"] == 0.5 and s["damaged_area_km2"] == pytest.approx(
        (cls == 1).sum() * 100 / 1e6)
    assert 0 <= s["damaged_share_of_valid"] <= 1
    agree, asrc = _read(maps / "irpin_damage_agreement.tif")
    assert set(np.unique(agree)) <= {0, 1, 2, 3, 255}
    with rasterio.open(r["labels"]) as lab:
        labels = lab.read(1)
    assert (agree[labels == 255] == 255).all()
    assert s["patch_metrics"] is None or 0 <= s["patch_metrics"]["damage_recall"] <= 1


def test_real_model_and_cli(tmp_path, aoi_rasters, ckpt, capsys):
    r = aoi_rasters["hostomel"]
    out = tmp_path / "hostomel_damage_prob.tif"
    assert main(["-q", "predict", "--before", str(r["before"]), "--after", str(r["after"]),
                 "--ckpt", str(ckpt), "--out", str(out), "--stride", "16", "--tta",
                 "--threshold", "0.3"]) == 0
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
        predict_map(r["before"], r["after"], ckpt, blocker / "m_damage_prob.tif",
                    PredictOptions(progress=False))

    def broken(before, after):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        predict_map(r["before"], r["after"], ckpt, out, PredictOptions(progress=False),
                    scorer=broken)
    assert list((tmp_path / "o").iterdir()) == []  # no partial outputs
