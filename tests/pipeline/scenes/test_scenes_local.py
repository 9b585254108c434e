"""Scene acquisition from local files and the synthetic source (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.warp import calculate_default_transform, reproject
from support.scene_checks import assert_scene_product

from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.grid import aoi_grid
from pipeline.scenes import acquire_scene
from pipeline.scenes.local import LocalOptions
from pipeline.synthetic import Nuisances, generate_synthetic

KM = 1.5


@pytest.fixture(scope="module")
def aoi(bucha_aoi_path):
    return load_aoi(bucha_aoi_path)


@pytest.fixture(scope="module")
def raw(tmp_path_factory, aoi):
    return generate_synthetic(aoi, tmp_path_factory.mktemp("raw"), seed=5, max_size_km=KM)


def _read(path):
    with rasterio.open(path) as src:
        return src.read().astype(np.int64)


def test_synthetic_source_harmonised_and_masked(tmp_path, aoi, raw):
    grid = aoi_grid(aoi, KM)
    outs = {}
    for epoch in ("before", "after"):
        out = tmp_path / f"{epoch}.tif"
        acquire_scene(aoi, epoch, out, "synthetic", max_size_km=KM, seed=5)
        outs[epoch] = assert_scene_product(out, grid)
    with rasterio.open(tmp_path / "after.tif") as a, rasterio.open(tmp_path / "before.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs  # exactly one grid
        assert a.tags()["BOA_ADD_OFFSET_APPLIED"] == "-1000,-1000,-1000,-1000"
        assert a.tags()["ACQUISITION_DATE"] == "2022-05-05"
    raw_after = _read(raw.after)
    with rasterio.open(raw.after_scl) as s:
        scl = np.kron(s.read(1), np.ones((2, 2), dtype=np.uint8))[: grid.height, : grid.width]
    clear = np.isin(scl, (4, 5, 6)) & (raw_after[0] > 0)
    # harmonised: exactly the raw DN minus the offset on clear ground
    assert (outs["after"][:, clear] == raw_after[:, clear] - 1000).all()
    # cloud, shadow and swath nodata are masked
    assert (outs["after"][:, np.isin(scl, (3, 8, 9, 0))] == 0).all()


def _safe(tmp_path, aoi, offset=-1000):
    """A miniature L2A SAFE folder covering the AOI grid on its own (shifted) 10 m grid."""
    grid = aoi_grid(aoi, KM)
    name = "S2B_MSIL2A_20220505T085559_N0400_R007_T36UUB_20220505T103253.SAFE"
    root = tmp_path / name
    img = root / "GRANULE" / "L2A_T36UUB_A026000_20220505T085602" / "IMG_DATA"
    (img / "R10m").mkdir(parents=True)
    (img / "R20m").mkdir(parents=True)
    ids = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13))
    (root / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><n1:Level-2A_User_Product xmlns:n1="x">'
        "<n1:General_Info><Product_Info><PRODUCT_START_TIME>2022-05-05T08:55:59.024Z"
        "</PRODUCT_START_TIME><PROCESSING_BASELINE>04.00</PROCESSING_BASELINE></Product_Info>"
        "<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
        '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>'
        f"</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>{ids}"
        "</BOA_ADD_OFFSET_VALUES_LIST></Product_Image_Characteristics></n1:General_Info>"
        "</n1:Level-2A_User_Product>"
    )
    left, top = grid.transform.c - 205, grid.transform.f + 195  # not on the AOI grid
    size = grid.width + 60
    rows, cols = np.mgrid[0:size, 0:size]
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        data = (2000 + 300 * i + 2 * cols + rows).astype(np.uint16)
        t = rasterio.transform.from_origin(left, top, 10, 10)
        with rasterio.open(
            img / "R10m" / f"T36UUB_20220505T085559_{band}_10m.jp2",
            "w",
            driver="JP2OpenJPEG",
            width=size,
            height=size,
            count=1,
            dtype="uint16",
            crs=grid.crs,
            transform=t,
            QUALITY=100,
            REVERSIBLE="YES",
        ) as dst:
            dst.write(data, 1)
    scl = np.full((size // 2, size // 2), 5, dtype=np.uint8)
    scl[10:20, 10:20] = 9  # a 200 m cloud overlapping the AOI grid's top-left corner
    with rasterio.open(
        img / "R20m" / "T36UUB_20220505T085559_SCL_20m.jp2",
        "w",
        driver="JP2OpenJPEG",
        width=size // 2,
        height=size // 2,
        count=1,
        dtype="uint8",
        crs=grid.crs,
        transform=rasterio.transform.from_origin(left, top, 20, 20),
        QUALITY=100,
        REVERSIBLE="YES",
    ) as dst:
        dst.write(scl, 1)
    return root, (left, top)


def test_local_safe_folder(tmp_path, aoi):
    safe, (left, top) = _safe(tmp_path, aoi)
    grid = aoi_grid(aoi, KM)
    out = tmp_path / "after.tif"
    summary = acquire_scene(aoi, "after", out, "local", safe, max_size_km=KM)
    data = assert_scene_product(out, grid)
    assert summary["boa_add_offset_applied"] == [-1000] * 4
    assert summary["dates"] == ["2022-05-05"]
    # bilinear resampling of a linear ramp: value at each AOI pixel centre, minus the offset
    r, c = 50, 70
    x = grid.transform.c + (c + 0.5) * 10
    y = grid.transform.f - (r + 0.5) * 10
    src_col, src_row = (x - left) / 10 - 0.5, (top - y) / 10 - 0.5
    for i in range(4):
        expected = 2000 + 300 * i + 2 * src_col + src_row - 1000
        assert abs(int(data[i, r, c]) - expected) <= 1
    # the SCL cloud (nearest-resampled from 20 m) is masked
    # the cloud spans x in [grid left - 5, +195] and y in [grid top - 5, -205]
    assert (data[:, 1:19, 1:18] == 0).all()
    assert (data[:, 1:19, 20:] > 0).all()


def test_local_safe_zip(tmp_path, aoi):
    import shutil

    safe, _ = _safe(tmp_path, aoi)
    archive = shutil.make_archive(str(tmp_path / "product"), "zip", tmp_path, safe.name)
    out = tmp_path / "z.tif"
    acquire_scene(aoi, "after", out, "local", archive, max_size_km=KM)
    assert_scene_product(out, aoi_grid(aoi, KM))


def test_local_geotiff_in_epsg4326(tmp_path, aoi, raw):
    """A scene in lon/lat at another resolution, bands described, lands on the AOI grid."""
    src_path = tmp_path / "download_4326.tif"
    clean = generate_synthetic(
        aoi,
        tmp_path / "clean",
        seed=5,
        max_size_km=KM,
        nuisances=Nuisances(cloud=False, swath_edge=False),
    )
    with rasterio.open(clean.after) as src:
        transform, w, h = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds, resolution=0.00008
        )
        profile = dict(
            src.profile, driver="GTiff", crs="EPSG:4326", transform=transform, width=w, height=h
        )
        with rasterio.open(src_path, "w", **profile) as dst:
            for b in range(1, 5):
                arr = np.zeros((h, w), dtype=np.uint16)
                reproject(
                    rasterio.band(src, b),
                    arr,
                    dst_transform=transform,
                    dst_crs="EPSG:4326",
                    resampling=rasterio.enums.Resampling.nearest,
                )
                dst.write(arr, b)
                dst.update_tags(b, BOA_ADD_OFFSET="-1000")
            dst.descriptions = ("B02", "B03", "B04", "B08")
            dst.update_tags(ACQUISITION_DATE="2022-05-05")
    out = tmp_path / "after.tif"
    acquire_scene(aoi, "after", out, "local", src_path, max_size_km=KM, min_valid_fraction=0.5)
    data = assert_scene_product(out, aoi_grid(aoi, KM))
    truth = _read(clean.after) - 1000
    both = data[0] > 0
    assert both.mean() > 0.9
    rel = np.abs(data[:, both] - truth[:, both]) / truth[:, both]
    assert np.median(rel) < 0.08  # two resamplings of textured ground


def test_band_order_by_description(tmp_path, aoi, raw):
    """Bands stored as B08, B04, B03, B02 with descriptions are reordered, not copied."""
    path = tmp_path / "shuffled.tif"
    with rasterio.open(raw.before) as src:
        data = src.read()
        profile = src.profile
        profile.update(driver="GTiff")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[::-1])
        dst.descriptions = ("B08", "B04", "B03", "B02")
        dst.update_tags(ACQUISITION_DATE="2021-10-22")
    out = tmp_path / "before.tif"
    acquire_scene(
        aoi,
        "before",
        out,
        "local",
        path,
        max_size_km=KM,
        local=LocalOptions(boa_offset=0, scl_path=raw.before_scl),
    )
    got = _read(out)
    ok = got[0] > 0
    assert (got[:, ok] == data.astype(np.int64)[:, ok]).all()


@pytest.mark.parametrize(
    "case, message",
    [
        ("corrupt", "cannot read"),
        ("bands", "cannot find bands"),
        ("elsewhere", "does not cover AOI"),
        ("clouded", "valid observation"),
    ],
)
def test_local_bad_input(tmp_path, aoi, raw, case, message):
    path = tmp_path / "input.tif"
    grid = aoi_grid(aoi, KM)
    if case == "corrupt":
        path.write_bytes(b"II*\x00 this is not a tiff")
    else:
        count = 3 if case == "bands" else 4
        t = grid.transform
        if case == "elsewhere":
            t = rasterio.transform.from_origin(t.c + 100_000, t.f, 10, 10)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=count,
            dtype="uint16",
            crs=grid.crs,
            transform=t,
        ) as dst:
            # plausible land: blue < green < red < NIR
            levels = np.array([600, 800, 1000, 2500][:count], dtype=np.uint16)
            dst.write(np.broadcast_to(levels[:, None, None], (count, *grid.shape)))
            dst.update_tags(ACQUISITION_DATE="2021-10-22")
        if case == "clouded":
            scl = tmp_path / "input_scl.tif"
            with rasterio.open(
                scl,
                "w",
                driver="GTiff",
                width=grid.width,
                height=grid.height,
                count=1,
                dtype="uint8",
                crs=grid.crs,
                transform=grid.transform,
            ) as dst:
                dst.write(np.full((1, *grid.shape), 9, dtype=np.uint8))
    out = tmp_path / "out" / "before.tif"
    with pytest.raises(PipelineError, match=message) as err:
        acquire_scene(aoi, "before", out, "local", path, max_size_km=KM)
    assert "bucha" in str(err.value) or str(path) in str(err.value)
    assert not out.exists() and not out.with_suffix(".json").exists()
    leftovers = (
        list(out.parent.glob("*")) + list(out.parent.glob(".*")) if out.parent.exists() else []
    )
    assert leftovers == []


def test_cli_exit_code_and_no_output(tmp_path, bucha_aoi_path, capsys):
    out = tmp_path / "s.tif"
    args = ["scene", str(bucha_aoi_path), "--epoch", "after", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:  # a usage error: argparse exits 2
        main([*args, "--source", "local", "--input", str(tmp_path / "missing.tif")])
    assert exit_info.value.code == 2 and not out.exists()
    assert "missing.tif: no such file" in capsys.readouterr().err


def test_synthetic_source_reads_a_written_folder(tmp_path, aoi, raw):
    """Reusing a `pipeline synthetic` folder gives the same product as generating afresh."""
    a, b = tmp_path / "generated.tif", tmp_path / "reused.tif"
    acquire_scene(aoi, "after", a, "synthetic", max_size_km=KM, seed=5)
    acquire_scene(aoi, "after", b, "synthetic", raw.after.parent, max_size_km=KM)
    assert (_read(a) == _read(b)).all()
    with pytest.raises(PipelineError, match="no synthetic before scene"):
        acquire_scene(
            aoi, "before", tmp_path / "x.tif", "synthetic", tmp_path / "empty", max_size_km=KM
        )
    assert not (tmp_path / "x.tif").exists()
