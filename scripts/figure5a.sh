#!/bin/sh
# figure5a.sh [--net conv|mlp] [--steps N] [--classes "K1 K2 .."] [--runs DIR] [--out DIR]:
# the paper's Figure 5a, training speed of the semi-supervised M2 model against
# the number of classes: Gumbel-Softmax (one encoder/decoder row per
# unlabelled image) and marginalisation (`exact`, K rows), each K of
# --classes (default 10 20 40 70 100), N steps each (default 5), one thread.
# The model has K classes while the labels stay 0..9 (`--classes K`): the
# cost of a step does not depend on the labels' values, so this times what
# the paper's random labels over K classes time.
#
# Steps per second of CPU time: each cell runs twice, 1 step and 1 + N
# steps, and the difference of the two processes' CPU times (user + system,
# the shell's `times`) over N is the cost of a step, free of the data
# loading, the first step's page faults and the closing evaluation, and of
# other work sharing the machine (wall-clock time is not, on a shared
# machine).  The program's own wall-clock steps/s of the longer run
# (summary.json: training alone) is kept beside it.
#
# Writes DIR/figure5a.csv (k,estimator,steps_per_cpu_s,cpu_s_per_step,
# steps_per_wall_s,steps,net) and DIR/figure5a.png (left: steps per CPU
# second of both; right: the speed-up, Gumbel-Softmax's over exact's); DIR
# defaults to results/semisup.  The runs go under
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
# cpu_seconds N DIR: train N steps into DIR; print the CPU seconds the
# process took (once: DIR/cpu_seconds keeps it, so a stopped script resumes).
cpu_seconds() {
    if [ ! -f "$2/summary.json" ] || [ ! -f "$2/cpu_seconds" ]; then
        echo "figure5a.sh: $net, K = $k, $est: $1 steps" >&2
        t=$(
            "$bin" train --task semisup --net "$net" --classes "$k" --estimator "$est" \
                --steps "$1" --eval-every 0 --eval-images 10 --threads 1 --quiet --force \
                --data "$data" --out "$2" > /dev/null
            times
        )
        mkdir -p "$2"
        # The second line of `times`: the children's user and system times.
        echo "$t" | tail -n 1 | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); n += a[1] * 60 + a[2] }
                           printf "%.3f\n", n }' > "$2/cpu_seconds"
    fi
    cat "$2/cpu_seconds"
}

echo "k,estimator,steps_per_cpu_s,cpu_s_per_step,steps_per_wall_s,steps,net" > "$csv.tmp"
for k in $classes; do
    for est in gumbel exact; do
        base=$(cpu_seconds 1 "$runs/k$k-$est-1")
        long=$(cpu_seconds $((steps + 1)) "$runs/k$k-$est-$((steps + 1))")
        wall=$(plot_json "$runs/k$k-$est-$((steps + 1))/summary.json" steps_per_second)
        awk -v k="$k" -v e="$est" -v b="$base" -v l="$long" -v n="$steps" -v w="$wall" -v net="$net" \
            'BEGIN { c = (l - b) / n; if (c > 0) printf "%s,%s,%.4f,%.4f,%s,%d,%s\n", k, e, 1 / c, c, w, n, net; else printf "%s,%s,?,?,%s,%d,%s\n", k, e, w, n, net }' >> "$csv.tmp"
    done
done
mv "$csv.tmp" "$csv"
sh scripts/plot/figure5a.sh "$csv" "$out/figure5a.png"
echo "figure5a.sh: wrote $csv and $out/figure5a.png"
