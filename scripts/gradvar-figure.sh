#!/bin/sh
# gradvar-figure.sh [--redraw] [OUTDIR [FIGURE]]: the gradient-variance figure of every
# estimator (FIGURE, by default results/estimators-beyond/figures/gradvar.png) from `gsvae gradvar` on
# four models of the paper's linear VAE (no hidden layer, learned prior,
# fixed binarization):
#   tiny-bernoulli      8 Bernoulli units, 2^8 codes, and
#   tiny-categorical    3 variables of 4 classes, 4^3 codes: fresh models
#                       (seed 1, untrained), small enough for exact
#                       enumeration to give each estimator's bias.  Trained
#                       under the protocol, these tiny codes stop carrying
#                       information within 1,000 steps (KL under 0.03 nats;
#                       the encoder's gradient is then near nothing), so the
#                       untrained model, as in tests/test_estimators.c, is
#                       the informative one.
#   linear-bernoulli    the paper's 200 units and
#   linear-categorical  its 20 x 10, each trained by Gumbel-Softmax under
#                       Table 1's protocol (scripts/protocol-jobs.sh's flags
#                       and the rate and schedule results/protocol/chosen.csv
#                       chose for the row), seed 1, 50,000 steps: the
#                       variances at the size of Table 1 (exact infeasible:
#                       cosines to each estimator's own mean, no bias).
# gradvar: 300 estimates of the encoder's gradient of the mean -ELBO of the
# first 100 test images, at tau 0.5 (where the protocol's schedule ends),
# after 200 draws that adapt the baselines and REBAR's/RELAX's control
# variates; vimco on its 5-sample bound (its own mean, no bias).
# Writes OUTDIR/NAME.csv (gradvar --csv) and OUTDIR/models/NAME/ (the runs;
# a finished run is not trained again, a CSV not measured again: delete it to
# redo it), then the figure (scripts/plot/gradvar.sh).  OUTDIR defaults to
# results/estimators-beyond/gradvar.  About 25 minutes on one core of this
# project's 2-core machine.  --redraw only draws the figure from the CSVs
# (scripts/figures.sh).  GSVAE_BIN, GSVAE_DATA as in protocol-jobs.sh.
set -eu
cd "$(dirname "$0")/.."
redraw=0
[ "${1:-}" = --redraw ] && { redraw=1; shift; }
out=${1:-results/estimators-beyond/gradvar}
figure=${2:-results/estimators-beyond/figures/gradvar.png}
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
[ $redraw = 1 ] || [ -x "$bin" ] || { echo "gradvar-figure.sh: $bin: not built (make)" >&2; exit 1; }
common="--task vae --hidden none --prior learned --optimizer momentum --momentum 0.9 --batch-loss sum --batch 100 --binarize fixed --validation 10000 --estimator gumbel --seed 1 --threads 1 --quiet"

# chosen ROW: "--lr LR --anneal-every N --anneal-rate R" of the row's
# Gumbel-Softmax cell in results/protocol/chosen.csv.
chosen() {
    awk -F, -v row="$1" '$1 == row && $2 == "gumbel" { printf "--lr %s --anneal-every %s --anneal-rate %s", $3, $4, $5; found = 1 }
        END { exit !found }' results/protocol/chosen.csv ||
        { echo "gradvar-figure.sh: results/protocol/chosen.csv: no gumbel cell for $1" >&2; exit 1; }
}

# model NAME TYPE LATENT STEPS: train OUTDIR/models/NAME unless it is done.
model() {
    dir=$out/models/$1
    [ -f "$dir/summary.json" ] && [ -f "$dir/model.ckpt" ] && return 0
    echo "gradvar-figure.sh: training $dir ($4 steps)"
    flags=$(chosen "vae-$2")
    # shellcheck disable=SC2086
    "$bin" train $common --latent-type "$2" --latent "$3" $flags --data "$data" \
        --steps "$4" --eval-every 5000 --iw-samples 0 --out "$dir"
}

# measure NAME MODEL...: OUTDIR/NAME.csv of the model the gradvar flags MODEL
# name.
measure() {
    name=$1
    shift
    [ -s "$out/$name.csv" ] && return 0
    echo "gradvar-figure.sh: measuring $out/$name.csv"
    "$bin" gradvar "$@" --data "$data" --batch 100 \
        --samples 300 --warmup 200 --tau 0.5 --bound-samples 5 --threads 1 --csv > "$out/$name.csv.tmp"
    mv "$out/$name.csv.tmp" "$out/$name.csv"
}

if [ $redraw = 0 ]; then
    mkdir -p "$out/models"
    tiny="--hidden none --binarize fixed --seed 1"
    measure tiny-bernoulli --latent-type bernoulli --latent 8 $tiny
    measure tiny-categorical --latent-type categorical --latent 3x4 $tiny
    model linear-bernoulli bernoulli 200 50000
    measure linear-bernoulli --ckpt "$out/models/linear-bernoulli/model.ckpt"
    model linear-categorical categorical 20x10 50000
    measure linear-categorical --ckpt "$out/models/linear-categorical/model.ckpt"
fi
mkdir -p "$(dirname "$figure")"
sh scripts/plot/gradvar.sh "$figure" \
    "Gradient estimators on the paper's linear VAE (gsvae gradvar, 300 estimates, tau 0.5)" \
    "$out/tiny-bernoulli.csv:8 Bernoulli units" "$out/tiny-categorical.csv:3 x 4 categorical" \
    "$out/linear-bernoulli.csv:200 Bernoulli units (Table 1)" \
    "$out/linear-categorical.csv:20 x 10 categorical (Table 1)"
echo "gradvar-figure.sh: drew $figure from $out/*.csv"
