"""Real downloads, each built in its own layout, read right or refused (issue 14).

Every input is made from one clean synthetic scene whose harmonised digital numbers are the
truth: Copernicus Browser raw bands (EPSG:4326, FLOAT32 / UINT16 / UINT8, no descriptions, no
date tag), the study's ``*_RGBNIR_clip.tif`` stacks, Earth Search per-band COGs with and
without the offset, GEE exports, and the bad inputs of the issue.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import rasterio
from rasterio.warp import calculate_default_transform, reproject
from support.scene_checks import assert_scene_product

from contract.processing_level import TAG as LEVEL_TAG
from pipeline.aoi import load_aoi
from pipeline.cli import main
from pipeline.errors import InputFileError
from pipeline.grid import aoi_grid
from pipeline.scenes import acquire_scene
from pipeline.scenes.local import LocalOptions
from pipeline.scenes.product import check_plausible, likely_cause
from pipeline.synthetic import Nuisances, generate_synthetic

KM = 1.5
BANDS = ("B02", "B03", "B04", "B08")
BROWSER = "2022-05-05-00_00_2022-05-05-23_59_Sentinel-2_L2A_{}_(Raw).tiff"


@pytest.fixture(scope="module")
def aoi(bucha_aoi_path):
    return load_aoi(bucha_aoi_path)


@pytest.fixture(scope="module")
def truth(tmp_path_factory, aoi):
    """Harmonised DN (4, H, W) on the AOI grid of a cloud-free scene, and its profile."""
    clean = generate_synthetic(
        aoi,
        tmp_path_factory.mktemp("truth"),
        seed=5,
        max_size_km=KM,
        nuisances=Nuisances(cloud=False, swath_edge=False),
    )
    with rasterio.open(clean.after) as src:
        dn = src.read().astype(np.float64) - 1000  # raw values carry the 2022 offset
        return dn, src.profile


@pytest.fixture(scope="module")
def lonlat(truth):
    """The truth's reflectance reprojected to EPSG:4326, as the Browser delivers it."""
    dn, profile = truth
    bounds = rasterio.transform.array_bounds(
        profile["height"], profile["width"], profile["transform"]
    )
    transform, w, h = calculate_default_transform(
        profile["crs"],
        "EPSG:4326",
        profile["width"],
        profile["height"],
        *bounds,
        resolution=0.00008,
    )
    out = np.zeros((4, h, w), dtype=np.float32)
    reproject(
        (dn / 10000).astype(np.float32),
        out,
        src_transform=profile["transform"],
        src_crs=profile["crs"],
        dst_transform=transform,
        dst_crs="EPSG:4326",
        resampling=rasterio.enums.Resampling.nearest,
    )
    return out, transform


def _write(path, data, crs, transform, descriptions=None, tags=None, band_tags=None, nodata=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[-1],
        height=data.shape[-2],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = descriptions
        if tags:
            dst.update_tags(**tags)
        for i, t in enumerate(band_tags or []):
            dst.update_tags(i + 1, **t)
    return path


def _encode(refl, kind):
    """Reflectance as the Browser's FLOAT32, UINT16 or UINT8 export encodes it."""
    if kind == "float32":
        return refl.astype(np.float32)
    top = 65535 if kind == "uint16" else 255
    return np.clip(np.round(refl * top), 0, top).astype(kind)


def _browser_folder(folder, lonlat, kind, bands=BANDS, name=BROWSER):
    refl, transform = lonlat
    folder.mkdir(parents=True, exist_ok=True)
    for i, band in enumerate(BANDS):
        if band in bands:
            _write(
                folder / name.format(band), _encode(refl[i : i + 1], kind), "EPSG:4326", transform
            )
    # the Browser's zip also holds a true-colour preview, which names no band
    _write(
        folder / name.replace("{}_(Raw)", "True_color"),
        _encode(refl[:3], "uint8"),
        "EPSG:4326",
        transform,
    )
    return folder


def _product(aoi, tmp_path, path, epoch="after", **options):
    out = tmp_path / f"{epoch}.tif"
    summary = acquire_scene(
        aoi, epoch, out, "local", path, max_size_km=KM, local=LocalOptions(**options)
    )
    return assert_scene_product(out, aoi_grid(aoi, KM)).astype(np.float64), summary


def _close(data, dn, tolerance):
    ok = data[0] > 0
    assert ok.mean() > 0.9
    rel = np.abs(data[:, ok] - dn[:, ok]) / dn[:, ok]
    assert np.median(rel) < tolerance, np.median(rel)


@pytest.mark.parametrize(
    "kind, scale, tolerance",
    [
        ("float32", "reflectance", 0.08),
        ("uint16", "browser-uint16", 0.08),
        ("uint8", "browser-uint8", 0.12),
    ],
)
def test_copernicus_browser_band_files(tmp_path, aoi, truth, lonlat, kind, scale, tolerance):
    """Browser raw bands in EPSG:4326, no descriptions or date tag: scale, bands, date found."""
    folder = _browser_folder(tmp_path / "browser", lonlat, kind)
    data, summary = _product(aoi, tmp_path, folder)
    assert summary["scale"]["input"] == scale and summary["dates"] == ["2022-05-05"]
    assert summary["boa_add_offset_applied"] == [0] * 4
    _close(data, truth[0], tolerance)
    with rasterio.open(tmp_path / "after.tif") as src:
        assert src.tags()["INPUT_SCALE"] == scale
    # the same files in the zip the Browser hands out
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"download/{f.name}")
    zipped, _ = _product(aoi, tmp_path, archive)
    assert (zipped == data).all()


@pytest.mark.parametrize("level", ["L1C", "L2A"])
def test_browser_names_give_the_processing_level(tmp_path, aoi, lonlat, level):
    """Issue 31.7: ``..._Sentinel-2_L1C_B02_(Raw).tiff`` is an L1C download: read as the
    Browser's (its UINT16 scale found) and recorded as L1C in the product's tag and JSON."""
    folder = _browser_folder(
        tmp_path / "browser", lonlat, "uint16", name=BROWSER.replace("L2A", level)
    )
    _, summary = _product(aoi, tmp_path, folder)
    assert summary["scale"]["input"] == "browser-uint16"
    assert summary["processing_level"] == level
    with rasterio.open(tmp_path / "after.tif") as src:
        assert src.tags()[LEVEL_TAG] == level


def test_processing_level_from_tags_or_unknown(tmp_path, aoi, truth):
    """A product-type tag states the level; a file that states none records none; names and
    tags that disagree are refused, naming both."""
    dn, profile = truth
    dn = dn.astype(np.uint16)
    common = {"descriptions": BANDS}
    for name, tags, level in (
        ("l1c.tif", {"PRODUCT_TYPE": "S2MSI1C"}, "L1C"),
        ("plain.tif", {}, None),
    ):
        path = _write(
            tmp_path / name,
            dn,
            profile["crs"],
            profile["transform"],
            tags={"ACQUISITION_DATE": "2022-05-05", **tags},
            **common,
        )
        _, summary = _product(aoi, tmp_path, path, scale="dn")
        assert summary["processing_level"] == level
        with rasterio.open(tmp_path / "after.tif") as src:
            assert src.tags().get(LEVEL_TAG) == level
    clash = _write(
        tmp_path / "S2A_MSIL2A_clash.tif",
        dn,
        profile["crs"],
        profile["transform"],
        tags={"ACQUISITION_DATE": "2022-05-05", "PRODUCT_TYPE": "S2MSI1C"},
        **common,
    )
    with pytest.raises(InputFileError, match="both processing levels.*S2MSI1C.*L1C"):
        _product(aoi, tmp_path, clash, scale="dn")


def test_user_stacked_browser_uint16_refused_or_read_right(tmp_path, aoi, truth, lonlat):
    """A stack of Browser UINT16 bands loses the names: never read 6.55x too bright."""
    refl, transform = lonlat
    stack = _write(tmp_path / "stack.tif", _encode(refl, "uint16"), "EPSG:4326", transform)
    with pytest.raises(InputFileError, match="--scale browser-uint16"):
        _product(aoi, tmp_path, stack, date="2022-05-05")
    # dated before the offset, the stack is taken as DN and the gate names the cause
    with pytest.raises(InputFileError, match="implausible.*B08=.*browser-uint16"):
        _product(aoi, tmp_path, stack, date="2021-10-22")
    assert not (tmp_path / "after.tif").exists()
    data, _ = _product(aoi, tmp_path, stack, date="2022-05-05", scale="browser-uint16")
    _close(data, truth[0], 0.08)


def test_float_reflectance_stack(tmp_path, aoi, truth):
    """A FLOAT32 reflectance stack is scaled, not cast to zeros."""
    dn, profile = truth
    path = _write(
        tmp_path / "refl.tif",
        (dn / 10000).astype(np.float32),
        profile["crs"],
        profile["transform"],
        descriptions=BANDS,
        tags={"ACQUISITION_DATE": "2022-05-05"},
    )
    data, summary = _product(aoi, tmp_path, path)
    assert summary["scale"]["input"] == "reflectance"
    assert np.abs(data - dn).max() <= 1


def test_study_rgbnir_stack_order(tmp_path, aoi, truth):
    """The study's *_RGBNIR_clip.tif stacks are B04,B03,B02,B08: never swap blue and red."""
    dn, profile = truth
    stack = dn[[2, 1, 0, 3]].astype(np.uint16)
    path = _write(
        tmp_path / "Bucha_20220505_RGBNIR_clip.tif", stack, profile["crs"], profile["transform"]
    )
    data, summary = _product(aoi, tmp_path, path, scale="dn")
    assert np.abs(data - dn).max() <= 1
    assert summary["band_order"]["file_order"] == ["B04", "B03", "B02", "B08"]
    assert summary["dates"] == ["2022-05-05"]  # from the file name
    # the same stack under another name: the default order is contradicted and refused
    other = shutil.copy(path, tmp_path / "stack.tif")
    with pytest.raises(InputFileError, match="likely order is B04,B03,B02,B08"):
        _product(aoi, tmp_path, other, scale="dn", date="2022-05-05")
    data, _ = _product(
        aoi, tmp_path, other, scale="dn", date="2022-05-05", bands=("B04", "B03", "B02", "B08")
    )
    assert np.abs(data - dn).max() <= 1


def test_zipped_stack_with_scl_file(tmp_path, aoi, truth):
    """A zip of one stack and its SCL raster: the stack is read, the SCL masks clouds."""
    dn, profile = truth
    stack = _write(
        tmp_path / "Town_RGBNIR_clip.tif",
        dn[[2, 1, 0, 3]].astype(np.uint16),
        profile["crs"],
        profile["transform"],
    )
    scl = np.full((1, *dn.shape[1:]), 4, dtype=np.uint8)
    scl[0, :30, :30] = 9  # a cloud in the top-left corner
    scl_path = _write(tmp_path / "Town_SCL.tif", scl, profile["crs"], profile["transform"])
    archive = tmp_path / "town.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(stack, stack.name)
        zf.write(scl_path, scl_path.name)
    data, summary = _product(aoi, tmp_path, archive, date="2022-05-05", scale="dn")
    assert (data[:, :30, :30] == 0).all() and (data[:, 40:, 40:] > 0).all()
    assert np.abs(data[:, 40:, 40:] - dn[:, 40:, 40:]).max() <= 1
    assert summary["scl_input"].endswith("Town_SCL.tif")


def _stac_item(offset_applied, baseline="04.00", c1=False):
    bands = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
    assets = {
        key: {
            "href": f"https://example.org/{b}.tif",
            "raster:bands": [{"scale": 0.0001, "offset": -0.1 if c1 else 0, "nodata": 0}],
        }
        for key, b in bands.items()
    }
    props = {"datetime": "2022-05-05T08:55:59Z", "s2:processing_baseline": baseline}
    if not c1:
        props["earthsearch:boa_offset_applied"] = offset_applied
        for a in assets.values():
            a.pop("raster:bands")
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "S2B_36UUB_20220505_0_L2A",
        "properties": props,
        "assets": assets,
    }


@pytest.mark.parametrize("collection", ["sentinel-2-l2a", "sentinel-2-c1-l2a"])
def test_earth_search_band_cogs(tmp_path, aoi, truth, collection):
    """Per-band COGs with the offset in (c1) or removed (boa_offset_applied), item beside."""
    dn, profile = truth
    c1 = collection.endswith("c1-l2a")
    raw = dn + (1000 if c1 else 0)
    folder = tmp_path / "S2B_36UUB_20220505_0_L2A"
    folder.mkdir()
    names = ("blue", "green", "red", "nir") if c1 else BANDS
    for i, name in enumerate(names):
        _write(
            folder / f"{name}.tif",
            raw[i : i + 1].astype(np.uint16),
            profile["crs"],
            profile["transform"],
            nodata=0,
        )
    (folder / "item.json").write_text(json.dumps(_stac_item(True, c1=c1)))
    data, summary = _product(aoi, tmp_path, folder)
    assert summary["scale"]["input"] == ("dn-offset" if c1 else "dn")
    assert np.abs(data - dn).max() <= 1
    assert summary["dates"] == ["2022-05-05"]


def test_offset_still_in_without_metadata_refused(tmp_path, aoi, truth):
    """A 2022 stack with no offset tags is refused, not read +1000 DN off with a warning."""
    dn, profile = truth
    path = _write(
        tmp_path / "s2_stack.tif",
        (dn + 1000).astype(np.uint16),
        profile["crs"],
        profile["transform"],
        descriptions=BANDS,
        tags={"ACQUISITION_DATE": "2022-05-05"},
    )
    with pytest.raises(InputFileError, match="cannot tell the value scale.*dn-offset"):
        _product(aoi, tmp_path, path)
    data, summary = _product(aoi, tmp_path, path, scale="dn-offset")
    assert summary["boa_add_offset_applied"] == [-1000] * 4
    assert np.abs(data - dn).max() <= 1


def test_gdal_scale_offset_metadata(tmp_path, aoi, truth):
    """A COG stating scale 0.0001 and offset -0.1 in GDAL metadata carries the offset."""
    dn, profile = truth
    path = tmp_path / "cog.tif"
    _write(
        path,
        (dn + 1000).astype(np.uint16),
        profile["crs"],
        profile["transform"],
        descriptions=BANDS,
        tags={"ACQUISITION_DATE": "2022-05-05"},
    )
    with rasterio.open(path, "r+") as dst:
        dst.scales = (0.0001,) * 4
        dst.offsets = (-0.1,) * 4
    data, summary = _product(aoi, tmp_path, path)
    assert summary["scale"]["input"] == "dn-offset"
    assert np.abs(data - dn).max() <= 1


def test_gee_export(tmp_path, aoi, truth):
    """GEE: bands described B2..B8, date only in the image id, S2_SR_HARMONIZED DN."""
    dn, profile = truth
    path = _write(
        tmp_path / "20220505T085559_20220505T085602_T36UUB.tif",
        dn.astype(np.uint16),
        profile["crs"],
        profile["transform"],
        descriptions=("B2", "B3", "B4", "B8"),
    )
    with pytest.raises(InputFileError, match="cannot tell the value scale"):
        _product(aoi, tmp_path, path)
    data, summary = _product(aoi, tmp_path, path, scale="dn")
    assert summary["dates"] == ["2022-05-05"]
    assert np.abs(data - dn).max() <= 1


def test_mixed_crs_and_resolution_in_one_download(tmp_path, aoi, truth, lonlat):
    """Band files in different CRSs and resolutions are each reprojected onto the grid."""
    dn, profile = truth
    folder = tmp_path / "mixed"
    folder.mkdir()
    t = profile["transform"]
    for i, band in enumerate(BANDS[:3]):
        coarse = dn[i, ::2, ::2] if band == "B03" else dn[i]
        tr = rasterio.transform.from_origin(t.c, t.f, 20, 20) if band == "B03" else t
        _write(
            folder / f"{band}.tif",
            coarse[None].astype(np.uint16),
            profile["crs"],
            tr,
            tags={"ACQUISITION_DATE": "2022-05-05"},
            band_tags=[{"BOA_ADD_OFFSET": "0"}],
        )
    refl, transform = lonlat
    _write(
        folder / "B08.tif",
        np.round(refl[3:4] * 10000).astype(np.uint16),
        "EPSG:4326",
        transform,
        band_tags=[{"BOA_ADD_OFFSET": "0"}],
    )
    data, summary = _product(aoi, tmp_path, folder)
    assert summary["scale"]["input"] == "dn"
    _close(data, dn, 0.08)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no file for band.*B08"),
        ("twice", "two files for band B04"),
        ("nodate", "--date YYYY-MM-DD"),
        ("range", "time range.*--date"),
        ("scale", "cannot tell the value scale"),
        ("nocrs", "has no CRS"),
        ("dtypes", "different data types"),
        ("uint8", "--scale browser-uint8"),
        ("single", "single band file"),
    ],
)
def test_bad_downloads(tmp_path, aoi, truth, lonlat, case, message):
    dn, profile = truth
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder
    if case in ("missing", "twice"):
        _browser_folder(folder, lonlat, "uint16", bands=BANDS[:3] if case == "missing" else BANDS)
        if case == "twice":
            _write(
                folder / "B04.tif", dn[2:3].astype(np.uint16), profile["crs"], profile["transform"]
            )
    elif case in ("nodate", "scale", "nocrs", "dtypes"):
        for i, band in enumerate(BANDS):
            dtype = np.float32 if case == "dtypes" and band == "B08" else np.uint16
            _write(
                folder / f"{band}.tif",
                dn[i : i + 1].astype(dtype),
                None if case == "nocrs" else profile["crs"],
                profile["transform"],
                tags=None if case == "nodate" else {"ACQUISITION_DATE": "2022-05-05"},
            )
    elif case == "range":
        _browser_folder(
            folder,
            lonlat,
            "uint16",
            name="2022-05-01-00_00_2022-05-10-23_59_Sentinel-2_L2A_{}_(Raw).tiff",
        )
    elif case == "uint8":
        path = _write(
            folder / "stack.tif",
            _encode(lonlat[0], "uint8"),
            "EPSG:4326",
            lonlat[1],
            tags={"ACQUISITION_DATE": "2022-05-05"},
        )
    else:
        path = _write(
            folder / BROWSER.format("B04"),
            _encode(lonlat[0][2:3], "uint16"),
            "EPSG:4326",
            lonlat[1],
        )
    out = tmp_path / "out" / "after.tif"
    with pytest.raises(InputFileError, match=message) as err:
        acquire_scene(aoi, "after", out, "local", path, max_size_km=KM)
    assert str(folder) in str(err.value)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_plausibility_gate_names_the_cause():
    """Medians outside L2A ranges are refused with the measurements and the likely cause."""
    shape = (4, 20, 20)
    land = np.array([450, 700, 600, 2900], dtype=np.float64)[:, None, None]
    valid = np.ones(shape[1:], dtype=bool)
    check_plausible(np.broadcast_to(land, shape), valid, None, "ok")  # passes
    cases = [
        (land * 65535 / 10000, "browser-uint16"),
        (land / 10000, "reflectance"),
        (land * 20, "too large"),
    ]
    for dn, cause in cases:
        with pytest.raises(InputFileError, match=f"B02=.*{cause}"):
            check_plausible(np.broadcast_to(dn, shape), valid, None, "scene")
    assert "dn-offset" in likely_cause([3000.0, 3500.0, 3400.0, 5000.0])


@pytest.mark.parametrize(
    "option, value", [("--scale", "dn-x"), ("--bands", "B04,B03,B02"), ("--date", "05/05/2022")]
)
def test_cli_option_errors_exit_2(tmp_path, bucha_aoi_path, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "scene",
                str(bucha_aoi_path),
                "--epoch",
                "after",
                "--out",
                str(tmp_path / "x.tif"),
                "--source",
                "local",
                "--input",
                str(tmp_path),
                option,
                value,
            ]
        )
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_cli_local_options(tmp_path, bucha_aoi_path, truth):
    dn, profile = truth
    path = _write(
        tmp_path / "Bucha_RGBNIR_clip.tif",
        dn[[2, 1, 0, 3]].astype(np.uint16),
        profile["crs"],
        profile["transform"],
    )
    out = tmp_path / "after.tif"
    assert (
        main(
            [
                "scene",
                str(bucha_aoi_path),
                "--epoch",
                "after",
                "--out",
                str(out),
                "--source",
                "local",
                "--input",
                str(path),
                "--date",
                "2022-05-05",
                "--scale",
                "dn",
                "--max-size-km",
                str(KM),
            ]
        )
        == 0
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["scale"]["input"] == "dn" and record["dates"] == ["2022-05-05"]
