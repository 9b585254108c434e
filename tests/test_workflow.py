"""The Snakemake workflow end to end, through Snakemake itself (issue 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SH_")}
    env["SH_PROFILE"] = "damagenet-tests-no-such-profile"
    env["HOME"] = extra.pop("home", env.get("HOME", "/tmp"))
    env.update(extra)
    return env


def _run(args, cwd, **env):
    return subprocess.run(SNAKEMAKE + args, cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=1500)


def test_dry_run_lists_every_rule_for_all_22_aois(tmp_path):
    proc = _run(["-n", "--config", f"aoi_dir={ROOT / 'aois'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout + proc.stderr
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["scene"] == 44 and counts["labels"] == 22 and counts["patches"] == 22
    assert counts["damage_map"] == 22 and counts["unosat"] == 22
    assert counts["dataset"] == counts["train"] == counts["evaluate"] == 1
    assert not (tmp_path / "data").exists()


def test_no_credentials_fails_fast_without_outputs(tmp_path):
    proc = _run(["--cores", "1", "--config", f"aoi_dir={ROOT / 'aois'}", "aois=[bucha]"],
                tmp_path, home=str(tmp_path))
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
    """The demo graph, smaller: 2 km AOIs, ResNet-18, 2 epochs."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["aoi_dir"] = str(ROOT / "aois")
    config["scenes"]["max_size_km"] = 2.0
    config["train"].update(backbone="resnet18", epochs=2, patience=2)
    config["predict"]["stride"] = 16
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "test.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = np.load(tmp_path / "data" / "processed" / "FinalBalanced_splits.npz")
    assert {"Xb_train", "Xa_test", "y_val"} <= set(d.files)
    assert (tmp_path / "models" / "best_resnet18.pt").exists()
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and "roc_auc" in metrics
    for aoi in ("bucha", "irpin", "hostomel"):
        with rasterio.open(tmp_path / "data" / "scenes" / aoi / "after.tif") as scene, \
                rasterio.open(tmp_path / "results" / "maps" / f"{aoi}_damage_prob.tif") as m:
            assert m.crs == scene.crs and m.transform == scene.transform
            assert m.shape == scene.shape and m.descriptions == ("damage_probability",)
        assert (tmp_path / "results" / "maps" / f"{aoi}_damage_class.qml").exists()
        assert (tmp_path / "logs" / "scene" / f"{aoi}_after.log").exists()
        assert (tmp_path / "logs" / "benchmarks" / "patches" / f"{aoi}.tsv").exists()


@pytest.mark.slow
def test_full_demo_configuration(tmp_path):
    """The README's main job exactly: config/demo.yaml (ResNet-101, 3 km AOIs)."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["aoi_dir"] = str(ROOT / "aois")
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["--cores", "2", "--configfile", str(tmp_path / "demo.yaml")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results" / "maps" / "bucha_damage_prob.tif").exists()
