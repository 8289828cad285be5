#!/bin/sh
# check-slurm.sh: check the Slurm path of scripts/reproduce.sh against a real
# Slurm: a one-node cluster on this machine from Debian's slurm-wlm.
#
# Installs slurm-wlm (with munge, its authentication) if missing, writes a
# slurm.conf for a single node, localhost, into a temporary directory,
# starts munged, slurmctld and slurmd, submits `reproduce.sh tiny --slurm`
# over three tiny jobs (the job array of DIR/slurm.sh and the dependent job
# that writes the tables), waits for them (at most CHECK_SLURM_TIMEOUT
# seconds, default 600), checks that every job left its summary.json and
# that the tables were written, and stops the daemons it started.
# Needs root (apt-get, the daemons) and a built ./gsvae and data/mnist.
# Not part of `make test`: run it by hand, `sh scripts/check-slurm.sh`.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "check-slurm.sh: run as root (it installs and starts Slurm)" >&2; exit 1; }
[ -x ./gsvae ] || { echo "check-slurm.sh: ./gsvae: not built (run make)" >&2; exit 1; }
timeout=${CHECK_SLURM_TIMEOUT:-600}

if ! command -v slurmctld > /dev/null 2>&1 || ! command -v slurmd > /dev/null 2>&1 ||
    ! command -v sbatch > /dev/null 2>&1 || ! command -v munged > /dev/null 2>&1; then
    echo "check-slurm.sh: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q > /dev/null || true
    apt-get install -y -q --no-install-recommends slurm-wlm munge > /dev/null
fi
echo "check-slurm.sh: $(slurmctld -V)"

work=$(mktemp -d /tmp/gsvae-slurm.XXXXXX)
chmod 755 "$work"
pids=""
cleanup() {
    status=$?
    # munged itself, not runuser, so that runuser reaps it and then exits.
    [ -f "$work/munge/munged.pid" ] && pids="$pids $(cat "$work/munge/munged.pid")"
    for p in $pids; do
        kill "$p" 2> /dev/null || true
    done
    for p in $pids; do
        # Wait for the daemon to go, at most 10 s.
        i=0
        while kill -0 "$p" 2> /dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
    done
    wait
    if [ $status = 0 ]; then
        rm -rf "$work"
    else
        echo "check-slurm.sh: FAILED; logs kept in $work" >&2
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# munge: a key of our own and a daemon on a socket of our own.
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 2> /dev/null
chown -R munge:munge "$work/munge"
chmod 755 "$work/munge"
chmod 400 "$work/munge/munge.key"
socket=$work/munge/munge.socket
runuser -u munge -- munged --foreground --key-file="$work/munge/munge.key" \
    --socket="$socket" --pid-file="$work/munge/munged.pid" --seed-file="$work/munge/seed" \
    --log-file="$work/munge/munged.log" > "$work/munge/munged.out" 2>&1 &

cpus=$(nproc)
mem=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<EOF
ClusterName=gsvaecheck
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=check Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
SLURM_CONF=$work/slurm.conf
export SLURM_CONF

i=0
while [ ! -S "$socket" ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
[ -S "$socket" ] || { echo "check-slurm.sh: munged did not start" >&2; exit 1; }
slurmctld -D -i -f "$SLURM_CONF" > "$work/slurmctld.out" 2>&1 &
pids="$pids $!"
slurmd -D -N localhost -f "$SLURM_CONF" > "$work/slurmd.out" 2>&1 &
pids="$pids $!"

# The node is up when sinfo says idle.
i=0
until [ "$(sinfo -h -n localhost -o %T 2> /dev/null)" = idle ]; do
    i=$((i + 1))
    [ $i -lt 60 ] || { echo "check-slurm.sh: the node did not come up (see $work/*.log)" >&2; exit 1; }
    sleep 1
done
echo "check-slurm.sh: one-node Slurm up: $(sinfo -h -o '%P %D %c %T')"

grid=$work/grid
only='^(vae-categorical-(gumbel|st-gumbel)|sbn-bernoulli-gumbel)-s1$'
sh scripts/reproduce.sh tiny --out "$grid" --only "$only" --slurm

start=$(date +%s)
while [ -n "$(squeue -h -o %i)" ]; do
    if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
        echo "check-slurm.sh: jobs still queued after $timeout s:" >&2
        squeue >&2
        scancel --user=root || true
        exit 1
    fi
    sleep 2
done
echo "check-slurm.sh: the queue emptied after $(($(date +%s) - start)) s"

failed=0
for name in sbn-bernoulli-gumbel-s1 vae-categorical-gumbel-s1 vae-categorical-st-gumbel-s1; do
    if [ -f "$grid/runs/$name/summary.json" ]; then
        echo "  ok: $name/summary.json"
    else
        echo "  MISSING: $grid/runs/$name/summary.json" >&2
        failed=1
    fi
done
for f in "$grid"/runs/slurm-*.out; do
    echo "  $(basename "$f"): $(tail -n 1 "$f")"
done
# --only submitted the three selected tasks of the whole grid's array, and
# those alone.
ran=$(ls "$grid"/runs/*/summary.json | wc -l)
tasks=$(ls "$grid"/runs/slurm-[0-9]*.out | wc -l)
if [ "$ran" = 3 ] && [ "$tasks" = 3 ]; then
    echo "  ok: 3 of the $(grep -c . "$grid/jobs.txt") tasks ran"
else
    echo "  WRONG: $tasks array tasks ran, $ran runs finished; --only selects 3" >&2
    failed=1
fi
if [ -f "$grid/README.md" ]; then
    echo "  ok: the dependent job wrote $(basename "$grid")/README.md"
else
    echo "  MISSING: $grid/README.md (the tables' job)" >&2
    failed=1
fi
[ $failed = 0 ] || exit 1
echo "check-slurm.sh: passed"
