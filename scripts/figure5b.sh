#!/bin/sh
# figure5b.sh [--steps N] [--runs DIR] [--out DIR]: the paper's Figure 5b,
# analogies of the semi-supervised M2 model with the paper's convolutional
# networks: `gsvae analogies --source test`, the first 10 test images (left
# column), each one's style z (the mean of q(z|x,y), y the classifier's
# guess) decoded with every class across the columns.
#
# The model: Gumbel-Softmax, --net conv, the Table 2 setting (100 labels,
# --weighting batch), N steps (default 1000: a short run, minutes, not the
# 50,000 of Table 2), in --runs (default runs/figure5b); a finished run is not
# trained again, an interrupted one resumes; a finished run of another
# estimator (a Table 2 final, say) is drawn as it is.  Writes
# DIR/figure5b-conv-EST-Nsteps.png (DIR: results/semisup; EST and N the run's
# estimator and steps, from its summary.json), the step count in the name so
# that a short run's grid cannot pass for the paper's.
# GSVAE_BIN, GSVAE_DATA as for reproduce.sh.
set -eu
usage="usage: scripts/figure5b.sh [--steps N] [--runs DIR] [--out DIR]"
steps=1000 runs=runs/figure5b out=results/semisup
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
    case $1 in
    --steps) steps=$2 ;;
    --runs) runs=$2 ;;
    --out) out=$2 ;;
    *) echo "figure5b.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
    esac
    shift 2
done
case $steps in '' | *[!0-9]* | 0) echo "figure5b.sh: --steps '$steps': expected a positive number" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
. scripts/plot/lib.sh  # plot_json, plot_finished
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
[ -x "$bin" ] || { echo "figure5b.sh: $bin: not built (run make)" >&2; exit 1; }
if ! plot_finished "$runs/summary.json"; then
    resume=""
    [ -f "$runs/model.ckpt" ] && resume=--resume
    "$bin" train --task semisup --net conv --estimator gumbel --weighting batch --labels 100 \
        --steps "$steps" --eval-every "$steps" --threads 1 --quiet --data "$data" --out "$runs" $resume
fi
done_steps=$(plot_json "$runs/summary.json" steps_done)
mkdir -p "$out"
est=$(sed -n 's/.*"estimator": *"\([a-z0-9-]*\)".*/\1/p' "$runs/summary.json" | head -n 1)
png=$out/figure5b-conv-${est:-gumbel}-${done_steps}steps.png
"$bin" analogies --ckpt "$runs/model.ckpt" --source test --rows 10 --data "$data" --threads 1 --out "$png"
