#!/bin/sh
# What the unlabelled -ELBO can teach q(y|x), along a run: trains a semisup
# run in stages of EVERY steps up to STEPS (each stage a --resume of the
# last, so the run is the one an unstaged run gives) and after each stage
# scores its checkpoint with `gsvae eval` on the test set, appending a row to
# DIR-genacc.csv (beside the run: a run's directory holds its own files only):
#
#   step,accuracy,class_nll,neg_elbo,gen_accuracy,agreement
#
# accuracy is argmax q(y|x)'s, gen_accuracy argmin_y -ELBO(x, y)'s (the class
# the generative model explains x best with), agreement how often the two
# pick the same class.  A stage already in the CSV is skipped, and one trained
# but not yet scored (the script stopped in between) is scored, so the script
# resumes where it stopped; a stage whose checkpoint is already past it (a run
# trained further by hand) is an error, not a silent row.
#
#   sh scripts/semisup-genacc.sh DIR STEPS EVERY [gsvae train flags...]
#
# The train flags are the run's own (--task semisup is implied; no --out,
# --steps, --eval-every or --resume).  GSVAE_BIN (default ./gsvae) and
# GSVAE_DATA (default data/mnist) as for reproduce.sh; GENACC_IMAGES
# (default 10000) test images to score.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: sh scripts/semisup-genacc.sh DIR STEPS EVERY [gsvae train flags...]" >&2
    exit 2
fi
dir=$1 steps=$2 every=$3
shift 3
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
images=${GENACC_IMAGES:-10000}
case "$steps,$every,$images" in
*[!0-9,]* | ,* | *,,* | *,)
    echo "semisup-genacc.sh: STEPS '$steps', EVERY '$every' and GENACC_IMAGES '$images' must be whole numbers" >&2
    exit 2 ;;
esac
if [ "$every" -lt 1 ] || [ "$steps" -lt "$every" ]; then
    echo "semisup-genacc.sh: need 1 <= EVERY ($every) <= STEPS ($steps)" >&2
    exit 2
fi
. "$(dirname "$0")/plot/lib.sh"  # plot_json, plot_finished
csv=${dir%/}-genacc.csv
k=$every
while [ "$k" -le "$steps" ]; do
    if [ -f "$csv" ] && grep -q "^$k," "$csv"; then
        k=$((k + every))
        continue
    fi
    if plot_finished "$dir/summary.json" && [ "$(plot_json "$dir/summary.json" steps_done)" = "$k" ]; then
        : # the stage was trained and the script stopped before scoring it
    elif [ -f "$dir/model.ckpt" ]; then
        "$bin" train --resume --out "$dir" --steps "$k" --eval-every "$every" --data "$data" "$@"
    else
        "$bin" train --task semisup --out "$dir" --steps "$k" --eval-every "$every" \
            --data "$data" "$@"
    fi
    done_steps=$(plot_json "$dir/summary.json" steps_done)
    if [ "$done_steps" != "$k" ]; then
        echo "semisup-genacc.sh: $dir: the run stands at step $done_steps, not $k: its stages are not this script's" >&2
        exit 1
    fi
    out=$("$bin" eval --ckpt "$dir/model.ckpt" --data "$data" --set test --images "$images" \
        --iw-samples 0 --threads 1 --json)
    row=$k
    for key in accuracy class_nll neg_elbo gen_accuracy agreement; do
        v=$(printf '%s\n' "$out" | plot_json /dev/stdin "test_$key")
        if [ -z "$v" ]; then
            echo "semisup-genacc.sh: $dir: gsvae eval gave no test_$key:" >&2
            printf '%s\n' "$out" >&2
            exit 1
        fi
        row=$row,$v
    done
    # The digits gsvae eval prints for a reader: -ELBO to 3, the rest to 4
    # (rounded from the JSON's 6, so class_nll and -ELBO may differ from its
    # text output by one in the last digit; the accuracies, counts over the
    # default 10,000 images, are exact).  A value that is not finite, null
    # in the JSON, reads as empty above and stops the script: awk would
    # print 0.
    row=$(echo "$row" | awk -F, '{ printf "%d,%.4f,%.4f,%.3f,%.4f,%.4f\n", $1, $2, $3, $4, $5, $6 }')
    [ -f "$csv" ] || echo "step,accuracy,class_nll,neg_elbo,gen_accuracy,agreement" >"$csv"
    echo "$row" >>"$csv"
    echo "semisup-genacc.sh: $dir step $k: $row"
    k=$((k + every))
done
