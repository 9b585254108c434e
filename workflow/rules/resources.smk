# What each job asks of the machine or the scheduler, derived from the config so that a cluster
# profile never has to repeat (and silently override) it. Functions only; rules use them in
# their threads: and resources: blocks.


def gpus(wildcards=None):
    """GPUs a device-using step asks for: none with ``device: cpu``, one with auto or cuda.

    On Slurm this is the job's only GPU request (the plugin turns it into ``--gpus=1``), so a
    CPU-only cluster must run with ``device: cpu``: ``auto`` asks for a GPU the cluster lacks and
    sbatch refuses the job.
    """
    return 0 if config["device"] == "cpu" else 1


def step_threads(step):
    """CPU threads of a multi-threaded step: ``train.threads`` for training, else
    ``resources.threads.<step>``. Snakemake caps them at ``--cores`` locally; on a cluster they
    become ``--cpus-per-task``, so they must not exceed a node's CPUs."""
    if step == "train":
        return config["train"]["threads"]
    return config["resources"]["threads"][step]


def step_mem_mb(step):
    """Memory (MB) the scheduler reserves for a step, from ``resources.mem_mb.<step>``."""
    return config["resources"]["mem_mb"][step]
