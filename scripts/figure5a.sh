#!/bin/sh
# figure5a.sh [--net conv|mlp] [--steps N] [--classes "K1 K2 .."] [--runs DIR] [--out DIR]:
# the paper's Figure 5a, training speed of the semi-supervised M2 model against
# the number of classes: Gumbel-Softmax (one encoder/decoder row per
# unlabelled image) and marginalisation (`exact`, K rows), each K of
# --classes (default 10 20 40 70 100), N steps each (default 5), one thread.
# The model has K classes while the labels stay 0..9 (`--classes K`): the
# cost of a step does not depend on the labels' values, so this times what
# the paper's random labels over K classes time.  Steps per second are the
# program's own (summary.json: training alone, the evaluations excluded).
#
# Writes DIR/figure5a.csv (k,estimator,steps_per_s,steps,train_seconds,net)
# and DIR/figure5a.png (left: steps/s of both; right: the speed-up
# exact -> gumbel); DIR defaults to results/semisup.  The runs go under
# --runs (default runs/figure5a-NET); a run with a summary.json is not run
# again, so a stopped script resumes.  GSVAE_BIN, GSVAE_DATA as for
# reproduce.sh; OPENBLAS_CORETYPE passes through to the runs.
set -eu
usage="usage: scripts/figure5a.sh [--net conv|mlp] [--steps N] [--classes \"K1 K2 ..\"] [--runs DIR] [--out DIR]"
net=conv steps=5 classes="10 20 40 70 100" runs="" out=results/semisup
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
    case $1 in
    --net) net=$2 ;;
    --steps) steps=$2 ;;
    --classes) classes=$2 ;;
    --runs) runs=$2 ;;
    --out) out=$2 ;;
    *) echo "figure5a.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
    esac
    shift 2
done
case $net in conv | mlp) ;; *) echo "figure5a.sh: --net '$net': expected conv or mlp" >&2; exit 2 ;; esac
case $steps in '' | *[!0-9]* | 0) echo "figure5a.sh: --steps '$steps': expected a positive number" >&2; exit 2 ;; esac
for k in $classes; do
    case $k in '' | *[!0-9]*) echo "figure5a.sh: --classes: '$k' is not a number" >&2; exit 2 ;; esac
done
cd "$(dirname "$0")/.."
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
runs=${runs:-runs/figure5a-$net}
[ -x "$bin" ] || { echo "figure5a.sh: $bin: not built (run make)" >&2; exit 1; }
. scripts/plot/lib.sh
mkdir -p "$runs" "$out"
csv=$out/figure5a.csv
echo "k,estimator,steps_per_s,steps,train_seconds,net" > "$csv.tmp"
for k in $classes; do
    for est in gumbel exact; do
        dir=$runs/k$k-$est
        if [ ! -f "$dir/summary.json" ]; then
            echo "figure5a.sh: $net, K = $k, $est: $steps steps" >&2
            "$bin" train --task semisup --net "$net" --classes "$k" --estimator "$est" \
                --steps "$steps" --eval-every 0 --eval-images 10 --threads 1 --quiet --force \
                --data "$data" --out "$dir" > /dev/null
        fi
        echo "$k,$est,$(plot_json "$dir/summary.json" steps_per_second),$steps,$(plot_json "$dir/summary.json" train_seconds),$net" >> "$csv.tmp"
    done
done
mv "$csv.tmp" "$csv"
sh scripts/plot/figure5a.sh "$csv" "$out/figure5a.png"
echo "figure5a.sh: wrote $csv and $out/figure5a.png"
