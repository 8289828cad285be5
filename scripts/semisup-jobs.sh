#!/bin/sh
# semisup-jobs.sh sweep|final OUTDIR [SWEEPDIR]: the job list (one `gsvae
# train` command a line, the last argument --out DIR) of the paper's Table 2
# (J17 section 4.3): the semi-supervised M2 model with the paper's
# convolutional networks (--net conv, results/semisup/networks.md), 100
# labels (10 per class), 50,000 unlabelled images binarized afresh at every
# draw, tau = max(0.5, exp(-3e-5 t)) updated every 2000 steps (the task's
# defaults), for marginalisation (exact), Gumbel-Softmax and ST
# Gumbel-Softmax:
#
#   sweep  every estimator x alpha in SEMISUP_ALPHAS (the paper's
#          {0.1, 0.2, 0.3, 0.8, 1.0}), seed 1.
#   final  each estimator at the alpha of the best validation accuracy
#          among the sweep's runs in SWEEPDIR (all must be finished), seeds
#          1-3; seed 1 is the sweep's own run (its --out points there, so
#          that scripts/run-job.sh finds it done) when the sweep ran at the
#          finals' budget, and a run of its own in OUTDIR when the sweep
#          was shorter (SEMISUP_STEPS set lower for it), so that the
#          sweep's runs stay as they were chosen on.  That run starts as a
#          copy of the sweep's run directory where the sweep's checkpoint
#          is there (its run finished, and OUTDIR has no run of that name
#          yet): run-job.sh then continues it from the sweep's last step
#          instead of training those steps again.  The same run: the
#          checkpoint holds the step, the parameters, Adam's moments and
#          the random state, and evaluations draw from a generator of their
#          own, so a run continued in stages equals one run digit for digit
#          (tests/test_scripts.c); its log.csv keeps the sweep's
#          evaluations before its own.
#   pick   (semisup-jobs.sh pick SWEEPDIR EST KEY) the alpha of the sweep's
#          run of EST with the largest KEY (valid_accuracy or
#          test_accuracy) in its summary.json; the first on a tie.
#
# Every run holds out the last 10,000 training images as the validation set
# (--validation 10000; the pool of unlabelled images is the first 50,000 of
# the other 50,000) and scores validation and test at each evaluation, so
# that scripts/semisup-table2.sh can also say what a choice on the test set
# (the paper's) would have been.  --weighting batch, as the semisup runs of
# scripts/reproduce.sh full (results/README.md says why).  SEMISUP_ESTIMATORS
# (default "exact gumbel st-gumbel") lists the estimators of the sweep and of
# the finals: the finals of the estimators whose sweep is finished can run
# before the others' (exact marginalisation's sweep costs as much as the
# other two's together).  Budgets:
# SEMISUP_STEPS (default 50000), SEMISUP_EVERY (steps between evaluations,
# default a tenth of the budget; each costs about a minute of CPU on the
# validation and test sets) and SEMISUP_EXTRA (flags appended to every run,
# for tests).  GSVAE_BIN, GSVAE_DATA as for reproduce.sh.
set -eu
mode=${1:-}
out=${2:-}
usage="usage: scripts/semisup-jobs.sh sweep|final OUTDIR [SWEEPDIR] | pick SWEEPDIR EST KEY"
case $mode in sweep | final | pick) ;; *) echo "$usage" >&2; exit 2 ;; esac
[ -n "$out" ] || { echo "$usage" >&2; exit 2; }
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
steps=${SEMISUP_STEPS:-50000}
alphas=${SEMISUP_ALPHAS:-0.1 0.2 0.3 0.8 1.0}
extra=${SEMISUP_EXTRA:-}
estimators=${SEMISUP_ESTIMATORS:-exact gumbel st-gumbel}
for est in $estimators; do
    case $est in exact | gumbel | st-gumbel) ;;
    *) echo "semisup-jobs.sh: SEMISUP_ESTIMATORS: '$est': expected exact, gumbel or st-gumbel" >&2; exit 2 ;;
    esac
done
every=${SEMISUP_EVERY:-$((steps / 10 > 0 ? steps / 10 : 1))}
common="--task semisup --net conv --labels 100 --unlabelled 50000 --validation 10000 --weighting batch --steps $steps --eval-every $every --quiet --threads 1"

run_line() { # EST ALPHA SEED DIR
    echo "$bin train $common --data $data --estimator $1 --alpha $2 --seed $3${extra:+ $extra} --out $4"
}

if [ "$mode" = sweep ]; then
    for est in $estimators; do
        for a in $alphas; do
            run_line "$est" "$a" 1 "$out/runs/$est-a$a-s1"
        done
    done
    exit 0
fi
. "$(dirname "$0")/plot/lib.sh"

# pick SWEEPDIR EST KEY: see above.
pick() {
    best="" best_v=""
    for a in $alphas; do
        s="$1/runs/$2-a$a-s1/summary.json"
        if ! plot_finished "$s"; then
            echo "semisup-jobs.sh: $s: not finished; run scripts/reproduce.sh semisup-paper first" >&2
            return 1
        fi
        v=$(plot_json "$s" "$3")
        if [ -z "$best" ] || awk -v a="$v" -v b="$best_v" 'BEGIN { exit !(a > b) }'; then
            best=$a best_v=$v
        fi
    done
    echo "$best"
}

if [ "$mode" = pick ]; then
    [ $# -eq 4 ] || { echo "$usage" >&2; exit 2; }
    pick "$2" "$3" "$4"
    exit
fi
sweep=${3:-}
[ -n "$sweep" ] || { echo "$usage" >&2; exit 2; }
for est in $estimators; do
    best=$(pick "$sweep" "$est" valid_accuracy)
    first=$sweep
    src=$sweep/runs/$est-a$best-s1
    sweep_steps=$(plot_json "$src/summary.json" steps)
    if [ "$sweep_steps" != "$steps" ]; then
        first=$out
        dst=$out/runs/$est-a$best-s1
        if [ ! -e "$dst" ] && [ -f "$src/model.ckpt" ] &&
            [ "$(plot_json "$src/summary.json" steps_done)" = "$sweep_steps" ]; then
            mkdir -p "$out/runs"
            rm -rf "$dst.copy"
            cp -R "$src" "$dst.copy" && mv "$dst.copy" "$dst"
            echo "semisup-jobs.sh: $dst: continues the sweep's run ($sweep_steps steps) from its checkpoint" >&2
        fi
    fi
    run_line "$est" "$best" 1 "$first/runs/$est-a$best-s1"
    for seed in 2 3; do
        run_line "$est" "$best" "$seed" "$out/runs/$est-a$best-s$seed"
    done
done
