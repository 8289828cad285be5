#!/bin/sh
# genacc.sh OUT.png CSV:ESTIMATOR [CSV:ESTIMATOR ...]: accuracy against the
# training step from scripts/semisup-genacc.sh's CSVs, one colour per
# estimator: q(y|x)'s test accuracy (solid) and the generative accuracy,
# argmin over y of -ELBO(x, y) (dashed), beside the paper's Table 2 range
# (grey band, 92.4-93.6%).  What the unlabelled -ELBO teaches q(y|x) is the
# dashed line's class; where it lies under the solid one, it pulls q down.
set -eu
[ $# -ge 2 ] || { echo "usage: scripts/plot/genacc.sh OUT.png CSV:ESTIMATOR [CSV:ESTIMATOR ...]" >&2; exit 2; }
out=$1
shift
PLOT_DIR=$(dirname "$0")
plot=""
for spec in "$@"; do
    csv=${spec%%:*} est=${spec#*:}
    [ "$est" != "$spec" ] || { echo "genacc.sh: $spec: give CSV:ESTIMATOR" >&2; exit 2; }
    [ -f "$csv" ] || { echo "genacc.sh: $csv: missing" >&2; exit 1; }
    head -n 1 "$csv" | grep -q '^step,accuracy,class_nll,neg_elbo,gen_accuracy,agreement$' ||
        { echo "genacc.sh: $csv: not a semisup-genacc.sh CSV (its header)" >&2; exit 1; }
    plot="$plot${plot:+, }'$csv' using 1:(100*\$2) with linespoints lt est_lt('$est') title est_label('$est').': q(y|x)', '' using 1:(100*\$5) with linespoints lt est_lt('$est') dt 2 title est_label('$est').': generative'"
done
command -v gnuplot > /dev/null 2>&1 || { echo "genacc.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
trap 'rm -f "$out.tmp"' EXIT
gnuplot <<GP
W = 1000; H = 560
load '$PLOT_DIR/style.gp'
set output '$out.tmp'
set datafile separator ','
set title "Semi-supervised M2 (conv networks, 100 labels): what the unlabelled -ELBO can teach q(y|x)" font ',14'
set xlabel 'training step'
set ylabel 'test accuracy (%)'
set yrange [30:100]
set xrange [0:*]
set key bottom right samplen 4 spacing 1.1 font ',12' title 'seed 1, alpha 0.8'
set object 1 rect from graph 0, first 92.4 to graph 1, first 93.6 fc rgb '#cccccc' fs solid 0.8 noborder behind
set label 1 "the paper's Table 2: 92.4-93.6%" at graph 0.02, first 95 textcolor rgb '#606060'
plot $plot
GP
mv "$out.tmp" "$out"
