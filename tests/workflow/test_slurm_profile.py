"""profiles/slurm checked without a cluster.

The profile is read the way ``snakemake --profile`` reads it, the demo's jobs are built with it,
and each job goes through the installed Slurm plugin's own ``slurm_extra`` validation and
sbatch command builder: what the plugin would refuse at submission (after hours of upstream
jobs, on a real run) fails here instead, as do threads or memory that differ from the config.
"""

import re
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("snakemake_executor_plugin_slurm")

from snakemake.api import SnakemakeApi  # noqa: E402
from snakemake.cli import parse_args, parse_config  # noqa: E402
from snakemake.settings.types import (  # noqa: E402
    ConfigSettings,
    DAGSettings,
    OutputSettings,
    ResourceSettings,
)
from snakemake_executor_plugin_slurm.submit_string import get_submit_command  # noqa: E402
from snakemake_executor_plugin_slurm.utils import set_gres_string  # noqa: E402
from snakemake_executor_plugin_slurm.validation import (  # noqa: E402
    get_forbidden_slurm_options,
    validate_slurm_extra,
)
from snakemake_interface_common.exceptions import WorkflowError  # noqa: E402
from support.paths import ROOT as REPO

PROFILE = REPO / "profiles" / "slurm"
DEVICE_RULES = {"train", "evaluate", "damage_map"}
# Resources that the rules derive from the config; a profile setting them overrides it.
CONFIG_DERIVED = {
    "mem_mb",
    "mem",
    "mem_mib",
    "mem_mb_per_cpu",
    "cpus_per_task",
    "cpus_per_gpu",
    "gpu",
    "gpus",
    "gres",
    "gpu_model",
    "_cores",
}


def profile_yaml_problems(profile: Path) -> list[str]:
    """What in the profile file itself the plugin forbids or what overrides the config."""
    doc = yaml.safe_load((profile / "config.yaml").read_text())
    problems = [f"set-threads for {rule}" for rule in doc.get("set-threads") or {}]
    blocks = {"default-resources": doc.get("default-resources") or {}}
    blocks.update(
        {f"set-resources {rule}": res for rule, res in (doc.get("set-resources") or {}).items()}
    )
    for where, res in blocks.items():
        problems += [f"{where}: {key} overrides the config" for key in res if key in CONFIG_DERIVED]
        extra = str(res.get("slurm_extra", ""))
        problems += [
            f"{where}: slurm_extra sets the {name}"
            for pattern, name in get_forbidden_slurm_options().items()
            if re.search(pattern, extra)
        ]
    return problems


def demo_jobs(profile: Path, config: dict, tmp_path: Path) -> list:
    """The demo's jobs as ``snakemake --profile PROFILE`` would submit them.

    Goes through Snakemake's own argument parser (so profile keys, set-threads and the
    resource blocks are read exactly as on the command line) and builds the DAG through its
    API; the last step reaches into the workflow object for the jobs.
    """
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump({**config, "aoi_dir": str(REPO / "aois")}))
    _, args = parse_args(["--profile", str(profile), "--configfile", str(configfile), "-n"])
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(
                nodes=args.jobs,
                resources=args.resources,
                overwrite_threads=args.set_threads,
                overwrite_resources=args.set_resources,
                default_resources=args.default_resources,
            ),
            config_settings=ConfigSettings(
                configfiles=args.configfile, config=parse_config(args.config)
            ),
            snakefile=REPO / "Snakefile",
            workdir=tmp_path,
        )
        workflow = workflow_api.dag(DAGSettings(forceall=True)).workflow_api._workflow
        workflow._prepare_dag(
            forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True
        )
        workflow._build_dag()
        return [job for job in workflow.dag.jobs if job.rule.name != "all"]


def sbatch_call(job) -> str:
    """The sbatch command line the plugin builds for ``job`` (after its slurm_extra check)."""
    validate_slurm_extra(job)
    params = {
        "run_uuid": "check",
        "slurm_logfile": "log",
        "comment_str": job.rule.name,
        "account": "",
        "partition": f"-p {job.resources.get('slurm_partition')}",
        "workdir": str(REPO),
    }
    return get_submit_command(job, params) + set_gres_string(job)


def job_problems(jobs: list, config: dict) -> list[str]:
    """Threads, memory or GPUs of the jobs that differ from what the config asks for."""
    problems = []
    for job in jobs:
        name = job.rule.name
        call = sbatch_call(job)
        threads = (
            config["train"]["threads"]
            if name == "train"
            else config["resources"]["threads"].get(name, 1)
        )
        if f"--cpus-per-task={threads}" not in call:
            problems.append(f"{name}: config threads {threads}, sbatch: {call}")
        mem = config["resources"]["mem_mb"][name]
        if f"--mem {mem} " not in call:
            problems.append(f"{name}: config mem_mb {mem}, sbatch: {call}")
        gpus = int(name in DEVICE_RULES and config["device"] != "cpu")
        if ("--gpus=1" in call) != bool(gpus) or "--gres" in call:
            problems.append(f"{name}: device {config['device']} wants {gpus} GPU, sbatch: {call}")
    return problems


@pytest.fixture(scope="module")
def demo_config() -> dict:
    """The demo config with threads and memory unlike any default, so that a value the
    profile or a rule hard-codes instead of reading the config shows."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["train"]["threads"] = 3
    config["resources"] = {
        "threads": {"evaluate": 3, "damage_map": 5},
        "mem_mb": {
            "synthetic": 1111,
            "scene": 1212,
            "unosat": 1313,
            "labels": 1414,
            "patches": 1515,
            "dataset": 1616,
            "train": 1717,
            "evaluate": 1818,
            "damage_map": 1919,
            "aggregate": 2020,
            "crossval": 2121,
        },
    }
    return config


def test_profile_file_has_nothing_forbidden_or_overriding():
    assert profile_yaml_problems(PROFILE) == []


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_demo_jobs_submit_what_the_config_asks(demo_config, device, tmp_path):
    config = {**demo_config, "device": device}
    jobs = demo_jobs(PROFILE, config, tmp_path)
    assert {job.rule.name for job in jobs} >= DEVICE_RULES | {"scene", "dataset"}
    assert job_problems(jobs, config) == []
    partitions = {job.rule.name: job.resources.get("slurm_partition") for job in jobs}
    assert {partitions[name] for name in DEVICE_RULES} == {"gpu"}
    assert partitions["scene"] == "cpu"


def _broken_profile(tmp_path: Path, edit) -> Path:
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE, profile)
    doc = yaml.safe_load((profile / "config.yaml").read_text())
    edit(doc)
    (profile / "config.yaml").write_text(yaml.safe_dump(doc))
    return profile


def test_check_catches_the_old_profile(demo_config, tmp_path):
    """The profile shipped before issue 22: GRES in slurm_extra, set-threads, fixed memory."""

    def old(doc):
        doc["set-threads"] = {"train": 8}
        doc["set-resources"]["train"].update(slurm_extra="'--gres=gpu:1'", mem_mb=32000)

    profile = _broken_profile(tmp_path, old)
    problems = profile_yaml_problems(profile)
    assert "set-threads for train" in problems
    assert "set-resources train: mem_mb overrides the config" in problems
    assert any("generic resources (GRES)" in p for p in problems)
    jobs = demo_jobs(profile, {**demo_config, "device": "cpu"}, tmp_path)
    train = next(job for job in jobs if job.rule.name == "train")
    with pytest.raises(WorkflowError, match="GRES"):
        sbatch_call(train)


def test_check_catches_threads_and_memory_overriding_the_config(demo_config, tmp_path):
    def override(doc):
        doc["set-threads"] = {"damage_map": 8}
        doc["default-resources"]["mem_mb"] = 32000

    profile = _broken_profile(tmp_path, override)
    assert profile_yaml_problems(profile) == [
        "set-threads for damage_map",
        "default-resources: mem_mb overrides the config",
    ]
    config = {**demo_config, "device": "cpu"}
    problems = job_problems(demo_jobs(profile, config, tmp_path), config)
    assert [p.split(",")[0] for p in problems] == ["damage_map: config threads 5"] * 3
