#!/usr/bin/env bash
# Check profiles/slurm on a real Slurm: stand up a single-node cluster from Debian packages,
# run the demo through the profile, run it locally, and compare the outputs byte for byte.
#
#   scripts/slurm_single_node.sh [WORKDIR]      # default WORKDIR /tmp/slurm-check
#
# For a DISPOSABLE machine only (a container or VM): it must run as root, installs slurm-wlm and
# munge with apt-get (skipped when slurmctld is already installed), writes /etc/slurm/slurm.conf
# and starts munged, slurmctld and slurmd directly (no systemd), then kills them on exit. The
# cluster has no accounting and no GPU: partitions `cpu` (default) and `gpu` on the one node, the
# demo runs with `device: cpu`, and Snakemake polls job states with squeue
# (--slurm-status-command squeue). Not part of CI; the result is pasted in docs/cluster.md.
#
# Environment: PYTHON, the interpreter with the project and its `slurm` extra installed
# (default: python3 on PATH).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-/tmp/slurm-check}
PYTHON=${PYTHON:-python3}
NODE=$(hostname -s)
SLURM_CONF=/etc/slurm/slurm.conf
PIDS=(/run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid)

die() { echo "slurm_single_node: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root on a disposable machine (it installs and starts Slurm)"
"$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
    || die "$PYTHON lacks snakemake-executor-plugin-slurm: pip install -e '.[slurm]'"

stop_daemons() {
    # Each daemon by the pid it wrote, never by name.
    for pidfile in "${PIDS[@]}"; do
        [[ -s $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
}
trap stop_daemons EXIT

install_packages() {
    command -v slurmctld >/dev/null && return
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
}

start_munge() {
    [[ -s /etc/munge/munge.key ]] || mungekey --create --force
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    munge -n | unmunge >/dev/null || die "munge does not work"
}

write_slurm_conf() {
    # The node as slurmd sees it (CPUs, memory), two partitions on it, no accounting.
    local hw
    hw=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$NODE NodeAddr=127.0.0.1/")
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    rm -f /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log
    cat > "$SLURM_CONF" <<EOF
ClusterName=single
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
$hw State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
    slurmctld -c -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 60); do
        sinfo -h -o %T 2>/dev/null | grep -q idle && { sinfo; return; }
        sleep 1
    done
    die "node $NODE did not become idle (see /var/log/slurm/)"
}

copy_tree() {
    # The working tree (tracked and unignored files), without outputs of earlier runs.
    mkdir -p "$1"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | tar -c --null -T -) | tar -x -C "$1"
}

run_demo() {  # run_demo DIR LOG SNAKEMAKE_ARGS...
    local dir=$1 log=$2 start
    shift 2
    start=$(date +%s)
    (cd "$dir" && PYTHONPATH=$dir "$PYTHON" -m snakemake --configfile config/demo.yaml \
        --config device=cpu "$@") > "$log" 2>&1 || die "run failed, see $log"
    echo $(($(date +%s) - start))
}

same_features() {  # same_features A.gpkg B.gpkg: same layers, attributes and geometries
    "$PYTHON" - "$1" "$2" <<'EOF_PY'
import sys
import pyogrio
a, b = sys.argv[1:]
layers = [name for name, _ in pyogrio.list_layers(a)]
same = layers == [name for name, _ in pyogrio.list_layers(b)] and all(
    pyogrio.read_dataframe(a, layer=n).equals(pyogrio.read_dataframe(b, layer=n)) for n in layers)
sys.exit(0 if same else 1)
EOF_PY
}

compare_outputs() {
    # Maps must be byte-identical, except a GeoPackage's last_change time stamp (its features
    # must be equal); the checkpoint is listed for information.
    local status=0 f verdict
    printf '%-44s %s\n' output "slurm vs local"
    for f in $(cd "$WORK/local" && ls results/maps/* results/metrics.json \
               data/processed/FinalBalanced_splits.npz models/*.pt); do
        if cmp -s "$WORK/local/$f" "$WORK/slurm/$f"; then
            verdict=identical
        elif [[ $f == *.gpkg ]] && same_features "$WORK/local/$f" "$WORK/slurm/$f"; then
            verdict="same features (GeoPackage time stamp differs)"
        else
            verdict=DIFFERENT
            [[ $f == results/maps/* ]] && status=1
        fi
        printf '%-44s %s\n' "$f" "$verdict"
    done
    return $status
}

install_packages
rm -rf "$WORK" && mkdir -p "$WORK"
start_munge
write_slurm_conf
start_slurm
copy_tree "$WORK/local"
copy_tree "$WORK/slurm"

echo "local run (--cores $(nproc)) ..."
local_s=$(run_demo "$WORK/local" "$WORK/local.log" --cores "$(nproc)")
echo "Slurm run (--profile profiles/slurm --slurm-status-command squeue) ..."
slurm_s=$(run_demo "$WORK/slurm" "$WORK/slurm.log" --profile profiles/slurm \
          --slurm-status-command squeue --slurm-keep-successful-logs)

submitted=$(grep -c "has been submitted with SLURM jobid" "$WORK/slurm.log")
gpu_jobs=$(grep -cE "(sched: Allocate .* Partition=gpu|_start_job: Started JobId=[0-9]+ in gpu )" \
           /var/log/slurm/slurmctld.log || true)
echo
echo "Slurm $(sinfo -V | cut -d' ' -f2), $(nproc) CPUs, plugin $("$PYTHON" -m pip show \
    snakemake-executor-plugin-slurm 2>/dev/null | sed -n 's/^Version: //p')"
echo "jobs submitted through sbatch: $submitted (to partition gpu: $gpu_jobs)"
echo "wall time: local ${local_s} s, Slurm ${slurm_s} s"
compare_outputs
