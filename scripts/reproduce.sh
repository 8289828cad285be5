#!/bin/sh
# reproduce.sh MODE [-j N] [--out DIR] [--dry-run]
#
# Regenerates the paper's tables: every task x latent type x estimator x
# seed as an independent `gsvae train` command.  The commands are written to
# DIR/jobs.txt first (one per line: hand the file unchanged to a cluster
# scheduler as a job array, line $TASK_ID), then run here N at a time.  A
# job whose summary.json exists is skipped, so an interrupted run resumes.
# Finally scripts/aggregate.sh writes DIR/README.md (tables beside the
# paper's numbers) and the figures.
#
# MODE quick: small budgets that exercise every cell in minutes.
# MODE full:  the paper's budgets (days on two cores); writes results/full/.
set -eu
mode=${1:-}
[ "$mode" = quick ] || [ "$mode" = full ] || {
    echo "usage: scripts/reproduce.sh quick|full [-j N] [--out DIR] [--dry-run]" >&2
    exit 2
}
shift
jobs=$(nproc)
out=""
dry=0
while [ $# -gt 0 ]; do
    case $1 in
    -j) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) echo "reproduce.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || { [ "$mode" = full ] && out=results/full || out=runs/reproduce-quick; }
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
[ -x "$bin" ] || { echo "reproduce.sh: $bin: not built (run make)" >&2; exit 1; }

estimators="sf darn muprop st annealed-st gumbel st-gumbel"
seeds="1 2 3"
# Budgets.  Full: the paper's VAE setup (50,000 steps of batch 100, Adam 1e-3,
# tau annealed to 0.5; see results/SETUP.md for the sources), the SBN task's
# defaults, and the semi-supervised task's defaults at k = 10.  At k = 100 the
# labels stay 0..9, so that cell only times a step (training steps/s, the
# evaluations excluded): 500 steps, as exact marginalisation over 100
# classes runs at under 1 step/s here (50,000 steps would take 19 hours).
# The k = 10 cells (accuracy) weigh the labelled and unlabelled batches'
# -ELBO alike (--weighting batch): under Kingma et al.'s dataset weights the
# Gumbel-Softmax classifier stays near uniform (results/README.md).
if [ "$mode" = full ]; then
    vae_budget="--steps 50000 --eval-every 5000 --iw-samples 1000"
    sbn_budget="--steps 50000 --eval-every 5000"
    semi_budget="--steps 50000 --eval-every 5000"
    semi_speed_budget="--steps 500 --eval-every 500"
else
    vae_budget="--steps 300 --eval-every 100 --eval-images 1000 --iw-samples 0"
    sbn_budget="--steps 300 --eval-every 100 --eval-samples 10 --eval-images 1000 --test-samples 100"
    semi_budget="--steps 50 --eval-every 50 --eval-images 500"
    semi_speed_budget=$semi_budget
fi

mkdir -p "$out/runs"
joblist="$out/jobs.txt"
: > "$joblist.tmp"
for task in sbn vae; do
    for lt in bernoulli categorical; do
        for est in $estimators; do
            for seed in $seeds; do
                name="$task-$lt-$est-s$seed"
                budget=$vae_budget
                [ $task = sbn ] && budget=$sbn_budget
                echo "$bin train --task $task --data $data --latent-type $lt --estimator $est --seed $seed $budget --quiet --threads 1 --out $out/runs/$name" >> "$joblist.tmp"
            done
        done
    done
done
# Semi-supervised: Gumbel-Softmax against exact marginalisation, k = 10 and 100.
for est in gumbel exact; do
    for k in 10 100; do
        for seed in $seeds; do
            name="semisup-k$k-$est-s$seed"
            budget="$semi_budget --weighting batch"
            [ $k = 100 ] && budget=$semi_speed_budget
            echo "$bin train --task semisup --data $data --labels 100 --classes $k --estimator $est --seed $seed $budget --quiet --threads 1 --out $out/runs/$name" >> "$joblist.tmp"
        done
    done
done
mv "$joblist.tmp" "$joblist"
echo "reproduce.sh: $(wc -l < "$joblist") jobs in $joblist; running $jobs at a time"
[ $dry = 1 ] && exit 0

start=$(date +%s)
# Each job: skip when done; its output goes to DIR/runs/NAME.out.
export out
tr '\n' '\0' < "$joblist" | xargs -0 -P "$jobs" -I CMD sh -c '
    cmd=$1
    dir=${cmd##*--out }
    [ -f "$dir/summary.json" ] && exit 0
    mkdir -p "$dir"
    if ! sh -c "$cmd" > "$dir.out" 2>&1; then
        echo "FAILED: $cmd (see $dir.out)" >&2
    fi
    exit 0' _ CMD
end=$(date +%s)
echo "reproduce.sh: jobs finished in $((end - start)) s"
echo "$mode $((end - start)) $(nproc)" > "$out/wall_time.txt"
sh scripts/aggregate.sh "$out" "$mode"
