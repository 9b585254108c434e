"""The Snakemake workflow end to end, through Snakemake itself (issue 9)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import yaml
from support.paths import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SH_")}
    env["SH_PROFILE"] = "damagenet-tests-no-such-profile"
    env["HOME"] = extra.pop("home", env.get("HOME", "/tmp"))
    env.update(extra)
    return env


def _run(args, cwd, **env):
    return subprocess.run(
        SNAKEMAKE + args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=1500
    )


def test_dry_run_lists_every_rule_for_all_22_aois(tmp_path):
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = _job_counts(proc.stdout + proc.stderr)
    assert counts["scene"] == 44 and counts["labels"] == 22 and counts["unosat"] == 22
    # the default model is the pixel model: per-pixel targets and tiles, one tile dataset
    assert counts["targets"] == counts["tiles"] == counts["damage_map"] == 22
    assert "patches" not in counts
    assert counts["dataset"] == counts["train"] == counts["evaluate"] == 1
    assert not (tmp_path / "data").exists()
    patch_model = ["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "model={arch: siamese-resnet}"]
    proc = _run(patch_model, tmp_path)  # the study's network: patches instead of tiles
    assert proc.returncode == 0, proc.stderr + proc.stdout
    counts = _job_counts(proc.stdout + proc.stderr)
    assert counts["patches"] == 22 and "tiles" not in counts


def _job_counts(out: str) -> dict[str, int]:
    """Jobs per rule from Snakemake's "Job stats" table."""
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_no_credentials_fails_fast_without_outputs(tmp_path):
    proc = _run(
        [
            "--cores",
            "1",
            "--config",
            f"aoi_dir={ROOT / 'aois'}",
            "aois=[bucha]",
            "scenes={source: sentinelhub}",
        ],
        tmp_path,
        home=str(tmp_path),
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "no Sentinel Hub credentials" in out and "SH_CLIENT_ID" in out
    assert "config/demo.yaml" in out
    for folder in ("data", "models", "results"):
        assert not (tmp_path / folder).exists()


def test_invalid_config_refused_by_schema(tmp_path):
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "device=gpu"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error validating config" in out and "'gpu' is not one of" in out
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "aois=[atlantis]"], tmp_path)
    assert proc.returncode != 0 and "atlantis" in proc.stdout + proc.stderr


def test_demo_workflow_runs_end_to_end(tmp_path):
    """The demo graph, smaller: one 1.5 km AOI, the default pixel model (narrow, 2 epochs),
    both sensors: scene, radar, labels, targets, tiles, dataset, training, evaluation, the
    Sentinel-2, PWTT and fused maps and their aggregates, and the report. The full demo (three
    AOIs) and the patch model's demo are in the slow suite."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config.update(aoi_dir=str(ROOT / "aois"), aois=["bucha"])
    config["scenes"]["max_size_km"] = 1.5
    config["model"] = {"tile_size": 32, "width": 8}
    config["train"].update(epochs=2, patience=2)
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "test.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = np.load(tmp_path / "data" / "processed" / "tiles32_splits.npz")
    assert {"Xb_train", "Xa_test", "y_val"} <= set(d.files)
    assert (tmp_path / "models" / "best_siamese-unet.pt").exists()
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert {"pixel", "patch", "point"} <= set(metrics["levels"]) and "roc_auc" in metrics
    for aoi in ("bucha",):
        with (
            rasterio.open(tmp_path / "data" / "scenes" / aoi / "after.tif") as scene,
            rasterio.open(tmp_path / "results" / "maps" / f"{aoi}_damage_prob.tif") as m,
            rasterio.open(tmp_path / "results" / "maps" / f"{aoi}_fused.tif") as f,
        ):
            assert m.crs == scene.crs and m.transform == scene.transform
            assert m.shape == scene.shape and m.descriptions == ("damage_probability",)
            assert (f.crs, f.transform, f.shape) == (m.crs, m.transform, m.shape)
            assert f.descriptions == ("fused_z",)
        assert (tmp_path / "results" / "maps" / f"{aoi}_damage_class.qml").exists()
        assert (tmp_path / "logs" / "scene" / f"{aoi}_after.log").exists()
        assert (tmp_path / "logs" / "benchmarks" / "tiles" / f"{aoi}.tsv").exists()
        for product in ("", "_pwtt", "_fused"):  # the demo maps with both sensors
            assert (tmp_path / "results" / "aggregate" / f"{aoi}{product}.gpkg").exists()
    # The rules run without -q: each log holds its command's messages.
    assert "INFO" in (tmp_path / "logs" / "scene" / "bucha_after.log").read_text()
    proc = _run(["--configfile", str(tmp_path / "test.yaml"), "--report", "report.html"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 0


@pytest.mark.slow
def test_demo_runs_with_the_patch_model(tmp_path):
    """The demo graph with the study's patch network (model.arch siamese-resnet): patches, the
    balanced patch dataset, ResNet-18 for 2 epochs, maps of both towns (2 km, Sentinel-2)."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config.update(aoi_dir=str(ROOT / "aois"), aois=["bucha", "irpin"], sensor="s2")
    config["scenes"]["max_size_km"] = 2.0
    config["model"] = {"arch": "siamese-resnet"}
    config["train"].update(backbone="resnet18", epochs=2, patience=2)
    config["predict"]["stride"] = 16
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "patch.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = np.load(tmp_path / "data" / "processed" / "FinalBalanced_splits.npz")
    assert {"Xb_train", "Xa_test", "y_val"} <= set(d.files)
    assert (tmp_path / "models" / "best_resnet18.pt").exists()
    assert "roc_auc" in (tmp_path / "results" / "metrics.json").read_text()
    for aoi in ("bucha", "irpin"):
        assert (tmp_path / "data" / "patches" / f"{aoi}.npz").exists()
        with rasterio.open(tmp_path / "results" / "maps" / f"{aoi}_damage_prob.tif") as m:
            assert m.descriptions == ("damage_probability",)


@pytest.mark.slow
def test_full_demo_configuration(tmp_path):
    """The README's main job exactly: config/demo.yaml (the pixel model, both sensors, 4 km)."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["aoi_dir"] = str(ROOT / "aois")
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "demo.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "maps" / "bucha_damage_prob.tif").exists()


def _dry(cwd, targets=(), configfiles=(), config=()):
    """A dry run printing shell commands."""
    args = [*targets, "-n", "-p"]
    if configfiles:
        args += ["--configfile", *map(str, configfiles)]
    proc = _run([*args, "--config", f"aoi_dir={ROOT / 'aois'}", *config], cwd)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout + proc.stderr


def _commands(out, word):
    return [line for line in out.splitlines() if line.startswith("Shell command:") and word in line]


def test_lint_reports_only_the_software_environment_advice(tmp_path):
    proc = _run(
        [
            "--lint",
            "--configfile",
            str(ROOT / "config" / "demo.yaml"),
            "--config",
            f"aoi_dir={ROOT / 'aois'}",
        ],
        tmp_path,
    )
    out = proc.stdout + proc.stderr
    findings = {line.strip() for line in out.splitlines() if line.startswith("    * ")}
    assert findings == {"* Specify a conda environment or container for each rule.:"}, out
    assert "Lints for snakefile" not in out


def test_map_mode_runs_scenes_and_maps_only(tmp_path):
    ckpt = tmp_path / "my model.pt"
    ckpt.write_bytes(b"not read by a dry run")
    out = _dry(tmp_path, config=["mode=map", f"checkpoint={ckpt}", "aois=[bucha,irpin]"])
    for rule in ("unosat", "labels", "patches", "dataset", "train", "evaluate"):
        assert not re.search(rf"^rule {rule}:", out, re.M), rule
    predict = _commands(out, "damagenet predict")
    assert len(predict) == 2 and all(f"--ckpt '{ckpt}'" in c for c in predict)
    assert not any("--labels" in c for c in predict)
    assert len(_commands(out, "pipeline scene")) == 4


def test_map_mode_needs_an_existing_checkpoint(tmp_path):
    for extra in ([], ["checkpoint=missing.pt"]):
        proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "mode=map", *extra], tmp_path)
        assert proc.returncode != 0 and "checkpoint" in proc.stdout + proc.stderr


def _aoi_file(folder, slug, labels):
    doc = json.loads((ROOT / "aois" / "bucha.geojson").read_text())
    props = doc["features"][0]["properties"]
    props["slug"] = slug
    if labels is None:
        props.pop("labels")
    else:
        props["labels"] = labels
    folder.mkdir(exist_ok=True)
    path = folder / f"{slug}.geojson"
    path.write_text(json.dumps(doc))
    return path


def _aoi_check(path):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "aoi", "check", str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )


def test_aoi_without_labels_maps_but_does_not_train(tmp_path):
    path = _aoi_file(tmp_path / "aois", "newcity", None)
    assert _aoi_check(path).returncode == 0  # a map-only AOI is valid
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    proc = _run(["-n", "--config", f"aoi_dir={tmp_path / 'aois'}"], tmp_path)
    assert proc.returncode != 0
    assert "newcity" in proc.stderr + proc.stdout and "mode=map" in proc.stderr + proc.stdout
    proc = _run(
        ["-n", "--config", f"aoi_dir={tmp_path / 'aois'}", "mode=map", f"checkpoint={ckpt}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_aoi_check_and_workflow_agree_on_plain_string_labels(tmp_path):
    """Issue 13: labels given as a plain string once passed the check and crashed the DAG."""
    path = _aoi_file(tmp_path / "aois", "stringy", "data/unosat/stringy.zip")
    check = _aoi_check(path)
    proc = _run(["-n", "-p", "--config", f"aoi_dir={tmp_path / 'aois'}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert "TypeError" not in out
    assert (check.returncode == 0) == (proc.returncode == 0), out
    if proc.returncode == 0:
        assert "--unosat data/unosat/stringy.zip" in out


def test_unosat_rule_follows_the_configured_data_folder(tmp_path):
    """Issue 31: rule unosat wrote to data/unosat/ whatever paths.data said."""
    _aoi_file(
        tmp_path / "aois", "moved", {"path": "data/unosat/moved.zip", "url": "https://x/y.zip"}
    )
    (tmp_path / "store.yaml").write_text(yaml.safe_dump({"paths": {"data": "store"}}))
    out = _dry(
        tmp_path,
        ["store/labels/moved.tif"],
        [tmp_path / "store.yaml"],
        [f"aoi_dir={tmp_path / 'aois'}"],
    )
    (cmd,) = _commands(out, "pipeline unosat")
    assert "--out store/unosat/moved.zip" in cmd
    assert "--unosat store/unosat/moved.zip" in _commands(out, "pipeline labels")[0]


def test_shell_metacharacters_in_labels_path_run_nothing(tmp_path):
    """Issue 21: an AOI whose labels.path holds $(...) must not run it in any rule."""
    evil = "data/unosat/c$(touch PWNED)`touch PWNED2`.zip"
    _aoi_file(tmp_path / "aois", "evil", {"path": evil})
    (tmp_path / evil).parent.mkdir(parents=True)
    (tmp_path / evil).write_bytes(b"PK not really a zip")
    scene = tmp_path / "data" / "scenes" / "evil" / "after.tif"
    scene.parent.mkdir(parents=True)
    scene.write_bytes(b"not a raster either")  # newer than the AOI file: no scene job
    proc = _run(
        ["data/labels/evil.tif", "--cores", "1", "--config", f"aoi_dir={tmp_path / 'aois'}"],
        tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0  # the labels step refuses the junk inputs...
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT.glob("PWNED*"))
    # ...after running with the path quoted, or the AOI file was refused before anything ran.
    ran = (tmp_path / "logs" / "labels" / "evil.log").exists()
    assert ran or ("evil.geojson" in out and "labels" in out), out


def test_scene_sources_are_wired_to_the_scene_command(tmp_path):
    def scene_commands(scenes, *targets):
        (tmp_path / "scenes.yaml").write_text(yaml.safe_dump({"scenes": scenes}))
        out = _dry(tmp_path, targets, [tmp_path / "scenes.yaml"], ["aois=[bucha]"])
        return _commands(out, "pipeline scene")

    (cmd,) = scene_commands({"source": "stac"}, "data/scenes/bucha/after.tif")
    assert "--source stac --stac-url https://earth-search.aws.element84.com/v1" in cmd
    assert "--collection sentinel-2-c1-l2a" in cmd and "--sh-base-url" not in cmd
    (cmd,) = scene_commands(
        {"source": "sentinelhub", "mosaic": True}, "data/scenes/bucha/after.tif"
    )
    assert "--sh-base-url https://sh.dataspace.copernicus.eu --mosaic" in cmd
    assert "--stac-url" not in cmd
    (tmp_path / "my downloads").mkdir()
    (tmp_path / "before.tif").write_bytes(b"x")
    local = {
        "bucha": {
            "before": "before.tif",
            "after": {
                "path": "my downloads",
                "date": "2022-05-05",
                "bands": ["B04", "B03", "B02", "B08"],
            },
        }
    }
    cmds = scene_commands(
        {"source": "local", "local": local},
        "data/scenes/bucha/after.tif",
        "data/scenes/bucha/before.tif",
    )
    after, before = ([c for c in cmds if f"--epoch {e}" in c] for e in ("after", "before"))
    assert "--input 'my downloads' --date 2022-05-05 --bands B04,B03,B02,B08" in after[0]
    assert "--input before.tif --min-valid-fraction" in before[0]


def test_aggregate_rule_follows_the_config(tmp_path):
    demo = ROOT / "config" / "demo.yaml"
    (tmp_path / "s2.yaml").write_text(yaml.safe_dump({"sensor": "s2"}))
    out = _dry(tmp_path, configfiles=[demo, tmp_path / "s2.yaml"])
    cmds = _commands(out, "damagenet aggregate")
    assert len(cmds) == 3
    assert (
        "--map results/maps/bucha_damage_prob.tif --out results/aggregate/bucha.gpkg "
        "--buildings data/synthetic/bucha/buildings.gpkg --grid-m 500 --threshold auto"
    ) in out
    (train,) = _commands(out, "damagenet train")  # the default model: the pixel model
    assert "--arch siamese-unet" in train and "--ckpt models/best_siamese-unet.pt" in train
    assert "--lr-backbone 0.001" in train and "--batch-size 16" in train
    assert len(_commands(out, "pipeline tiles")) == 3
    assert not _commands(out, "damagenet pwtt") and not _commands(out, "pipeline patches")
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump({"model": {"arch": "siamese-resnet"}}))
    out_patch = _dry(tmp_path, configfiles=[demo, tmp_path / "s2.yaml", tmp_path / "patch.yaml"])
    (train,) = _commands(out_patch, "damagenet train")  # the study's network: hard negatives
    assert "--arch siamese-resnet" in train and "--ckpt models/best_resnet101.pt" in train
    assert "--backbone resnet101 --batch-size 64" in train
    assert "--nvd data/labels/bucha_nvd.gpkg" in _commands(out_patch, "pipeline dataset")[0]
    (tmp_path / "off.yaml").write_text(yaml.safe_dump({"aggregate": {"buildings": None}}))
    out = _dry(tmp_path, configfiles=[demo, tmp_path / "off.yaml"])
    assert not _commands(out, "damagenet aggregate")


def test_crossval_rule_trains_the_configured_model(tmp_path):
    """The folds train the model the config describes: the pixel model's recipe from the model
    section, the patch model's depth from the crossval section."""
    demo = ROOT / "config" / "demo.yaml"
    (tmp_path / "unet.yaml").write_text(
        yaml.safe_dump({"model": {"encoder": "resnet18", "fusion": "both", "width": 8}})
    )
    (cv,) = _commands(_dry(tmp_path, ("crossval",), [demo, tmp_path / "unet.yaml"]), "crossval")
    assert "--npz data/processed/tiles64_splits.npz" in cv
    assert "--encoder resnet18 --fusion both --width 8 --batch-size 16" in cv
    assert "--lr-backbone 0.001 --lr-head 0.001" in cv and "--backbone" not in cv
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump({"model": {"arch": "siamese-resnet"}}))
    (cv,) = _commands(_dry(tmp_path, ("crossval",), [demo, tmp_path / "patch.yaml"]), "crossval")
    assert "--backbone resnet18 --batch-size 64" in cv and "--encoder" not in cv


def test_aggregate_fetches_named_footprints_and_districts(tmp_path):
    """Issue 32: footprints from OSM or Overture and districts from geoBoundaries, their
    services and the cache folder from the config; no footprint file is an input."""
    aggregate = {
        "buildings": "osm",
        "osm_url": "http://127.0.0.1:9/api/interpreter",
        "overture_url": "http://unused.example/overture",
        "zones": "geoboundaries",
        "districts_iso": "UKR",
        "districts_level": "ADM3",
        "geoboundaries_url": "http://127.0.0.1:9/gb",
    }
    (tmp_path / "agg.yaml").write_text(yaml.safe_dump({"aggregate": aggregate, "sensor": "s2"}))
    out = _dry(
        tmp_path,
        ["results/aggregate/bucha.gpkg"],
        [ROOT / "config" / "demo.yaml", tmp_path / "agg.yaml"],
    )
    (cmd,) = _commands(out, "damagenet aggregate")
    assert (
        "--buildings osm --osm-url http://127.0.0.1:9/api/interpreter --zones geoboundaries "
        "--districts-iso UKR --districts-level ADM3 --geoboundaries-url http://127.0.0.1:9/gb "
        "--data-dir data --aoi bucha --grid-m 500"
    ) in cmd
    assert "overture" not in cmd and "buildings.gpkg" not in cmd
    aggregate = {"buildings": "overture", "zones": "pwtt-grid", "threshold": 0.4}
    (tmp_path / "agg.yaml").write_text(yaml.safe_dump({"aggregate": aggregate, "sensor": "s2"}))
    out = _dry(
        tmp_path,
        ["results/aggregate/bucha.gpkg"],
        [ROOT / "config" / "demo.yaml", tmp_path / "agg.yaml"],
    )
    (cmd,) = _commands(out, "damagenet aggregate")
    assert "--buildings overture --zones pwtt-grid --data-dir data --aoi bucha" in cmd
    assert "--threshold 0.4" in cmd and "--overture-url" not in cmd


def test_radar_only_maps_need_no_checkpoint_scenes_or_model(tmp_path):
    """Issue 30.5: mode=map sensor=s1 maps any AOI from radar alone."""
    out = _dry(tmp_path, config=["mode=map", "sensor=s1", "aois=[bucha,irpin]"])
    for rule in ("scene", "damage_map", "fused_map", "unosat", "labels", "train"):
        assert not re.search(rf"^rule {rule}:", out, re.M), rule
    radar = _commands(out, "pipeline radar")
    pwtt = _commands(out, "damagenet pwtt")
    assert len(radar) == len(pwtt) == 2
    assert "--radar data/radar/bucha.zarr --out results/maps/bucha_pwtt.tif --threshold 3.3" in out
    assert not any("--null" in c for c in pwtt)  # the null test is only for the fused map
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "sensor=s1"], tmp_path)
    assert proc.returncode != 0 and "mode=map sensor=s1" in proc.stdout + proc.stderr


def test_both_sensors_fuse_and_aggregate_every_map(tmp_path):
    (tmp_path / "t.yaml").write_text(
        yaml.safe_dump({"aggregate": {"threshold": 0.4}, "pwtt": {"test": "welch"}})
    )
    out = _dry(tmp_path, configfiles=[ROOT / "config" / "demo.yaml", tmp_path / "t.yaml"])
    (pwtt,) = [c for c in _commands(out, "damagenet pwtt") if "bucha" in c]
    assert "--threshold 3.3 --welch --null" in pwtt
    (fuse,) = [c for c in _commands(out, "damagenet fuse") if "bucha" in c]
    assert (
        "--pwtt results/maps/bucha_pwtt.tif --optical results/maps/bucha_damage_prob.tif "
        "--out results/maps/bucha_fused.tif --threshold 3.0"
    ) in fuse
    aggregates = {
        re.search(r"--map (\S+)", c).group(1): c
        for c in _commands(out, "damagenet aggregate")
        if "bucha" in c
    }
    assert "--threshold 0.4" in aggregates["results/maps/bucha_damage_prob.tif"]
    for product in ("pwtt", "fused"):  # classed at the map's own threshold
        cmd = aggregates[f"results/maps/bucha_{product}.tif"]
        assert f"--out results/aggregate/bucha_{product}.gpkg" in cmd and "--threshold auto" in cmd
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not read by a dry run")
    out = _dry(tmp_path, config=["mode=map", "sensor=both", f"checkpoint={ckpt}", "aois=[bucha]"])
    assert len(_commands(out, "damagenet fuse")) == len(_commands(out, "damagenet predict")) == 1
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}", "mode=map", "sensor=both"], tmp_path)
    assert proc.returncode != 0 and "checkpoint" in proc.stdout + proc.stderr


def test_pixel_model_trains_on_a_tile_dataset(tmp_path):
    """Issue 28.5: model.arch siamese-unet: targets, tiles, a tile dataset, --arch."""
    (tmp_path / "unet.yaml").write_text(
        yaml.safe_dump({"model": {"arch": "siamese-unet", "tile_size": 48}})
    )
    out = _dry(tmp_path, configfiles=[ROOT / "config" / "demo.yaml", tmp_path / "unet.yaml"])
    assert not _commands(out, "pipeline patches")
    (targets,) = [c for c in _commands(out, "pipeline targets") if "irpin" in c]
    assert "--grid data/scenes/irpin/after.tif --unosat data/synthetic/irpin/unosat.zip" in targets
    assert "--out data/targets/irpin.tif --classes 1,2,3" in targets
    (tiles,) = [c for c in _commands(out, "pipeline tiles") if "irpin" in c]
    assert "--targets data/targets/irpin.tif --out data/tiles/irpin.npz --size 48" in tiles
    (dataset,) = _commands(out, "pipeline dataset")
    assert "data/tiles/bucha.npz data/tiles/irpin.npz data/tiles/hostomel.npz" in dataset
    assert "--out data/processed/tiles48_splits.npz" in dataset and "--tile-size 48" in dataset
    assert "--block-m 480.0" in dataset  # the demo's 320 m blocks, rounded up to whole tiles
    assert "--nvd" not in dataset and "--hard-negative-share" not in dataset
    (train,) = _commands(out, "damagenet train")
    assert "--arch siamese-unet" in train and "--ckpt models/best_siamese-unet.pt" in train
    assert "--ckpt models/best_siamese-unet.pt" in _commands(out, "damagenet evaluate")[0]


@pytest.mark.slow
def test_radar_part_of_the_demo_runs(tmp_path):
    """The demo's radar chain for real, map mode, one 2 km town: synthetic town, radar store,
    PWTT map, its aggregate; no checkpoint anywhere."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config.update(aoi_dir=str(ROOT / "aois"), aois=["bucha"], mode="map", sensor="s1")
    config["scenes"]["max_size_km"] = 2.0
    (tmp_path / "radar.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "radar.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    maps = tmp_path / "results" / "maps"
    with rasterio.open(maps / "bucha_pwtt.tif") as src:
        assert src.descriptions == ("pwtt_T",) and src.tags()["AOI"] == "bucha"
    assert (maps / "bucha_pwtt_quicklook.png").stat().st_size > 0
    assert (tmp_path / "results" / "aggregate" / "bucha_pwtt.gpkg").exists()
    assert "pwtt:" in (tmp_path / "logs" / "pwtt_map" / "bucha.log").read_text()
    assert (tmp_path / "logs" / "benchmarks" / "pwtt_map" / "bucha.tsv").exists()
    assert not (tmp_path / "data" / "scenes").exists() and not (tmp_path / "models").exists()


# Paths the docs name that are examples, not outputs of a documented command.
DOC_EXAMPLE_PATHS = {
    "data/unosat/x.zip",  # docs/labels.md: a labels.path in an AOI file
    "data/unosat/borodianka.zip",  # docs/adding-an-aoi.md: a new AOI's labels, not in aois/
    "models/study_resnet101.pt",  # README, docs/model.md: written by damagenet import-seed
    "data/overture/",  # docs/buildings.md: damagenet aggregate's cache, not a workflow output
    "data/synthetic/bucha",  # docs/radar.md: the synthetic rule's folder, pipeline radar --input
    "data/radar/newcity.zarr",  # README: the map-only example city, step by step
    "results/maps/newcity_pwtt.tif",  # README: the same
    "results/maps/newcity_damage_prob.tif",  # README: the same
    "results/maps/newcity_fused.tif",  # README: the same
}
DOC_PATH = re.compile(r"(?<![\w/.-])(?:data|results|models|logs)/(?:[\w.<>*-]|/|\{[\w,]+\})*")


def _doc_path_regex(path):
    """`results/maps/<aoi>_x.tif`, `data/scenes/<aoi>/{before,after}.tif`, `results/` as regexes."""
    out = ""
    for token in re.split(r"(<[^>]+>|\{[\w,]+\}|\*)", path.rstrip(".")):
        if token.startswith("<") or token == "*":
            out += r"[^/]+"
        elif token.startswith("{"):
            out += "(" + "|".join(map(re.escape, token[1:-1].split(","))) + ")"
        else:
            out += re.escape(token)
    return re.compile(out + (".*" if path.endswith("/") else "$"))


def test_docs_name_only_paths_the_workflow_writes(tmp_path):
    declared = set()
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump({"model": {"arch": "siamese-resnet"}}))
    runs = [
        ((), [ROOT / "config" / "demo.yaml"]),
        ((), []),
        (("crossval",), [ROOT / "config" / "demo.yaml"]),  # a target outside `all`
        ((), [ROOT / "config" / "demo.yaml", tmp_path / "patch.yaml"]),  # the patch model's
    ]
    for targets, configfiles in runs:
        out = _dry(tmp_path, targets=targets, configfiles=configfiles)
        for line in out.splitlines():
            key, _, value = line.strip().partition(": ")
            if key in ("output", "log", "benchmark"):
                declared.update(v.strip() for v in value.split(","))
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        for path in set(DOC_PATH.findall(doc.read_text())) - DOC_EXAMPLE_PATHS:
            if not any(_doc_path_regex(path).match(d) for d in declared):
                missing.append(f"{doc.name}: {path}")
    assert not missing, missing
