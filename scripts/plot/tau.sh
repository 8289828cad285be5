#!/bin/sh
# tau.sh RUNS OUT.png: the temperature schedules of a grid's runs, read from
# the tau column of their log.csv (seed 1): the VAE's annealed tau (Gumbel-
# Softmax, ST Gumbel-Softmax and annealed ST's slope 1/tau share it), the
# SBN's annealed-ST slope schedule, and the SBN's fixed tau for Gumbel-Softmax.
set -eu
[ $# -eq 2 ] || { echo "usage: scripts/plot/tau.sh RUNS OUT.png" >&2; exit 2; }
runs=$1 out=$2
PLOT_DIR=$(dirname "$0")
command -v gnuplot > /dev/null 2>&1 || { echo "tau.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
plots=""
add() { # LOG ESTIMATOR DASH TITLE
    [ -f "$1" ] || return 0
    plots="$plots${plots:+, }'$1' using 1:3 with lines lt est_lt('$2') lw 2.5 dt $3 title '$4'"
}
add "$runs/vae-categorical-gumbel-s1/log.csv" gumbel 1 "VAE: Gumbel-Softmax, ST Gumbel-Softmax, annealed ST"
add "$runs/sbn-bernoulli-annealed-st-s1/log.csv" annealed-st 1 "SBN: annealed ST (slope 1/tau)"
add "$runs/sbn-bernoulli-gumbel-s1/log.csv" gumbel PAPER "SBN: Gumbel-Softmax, ST Gumbel-Softmax (fixed)"
[ -n "$plots" ] || { echo "tau.sh: no runs with a temperature under $runs" >&2; exit 1; }
gnuplot <<EOF
W = 1000; H = 420
load '$PLOT_DIR/style.gp'
set output '$out.tmp'
set datafile separator ','
set title "Temperature schedules: tau = max(tau_{min}, tau_0 exp(−r t)), updated every N steps" font ',14'
set xlabel 'training step'
set ylabel 'tau'
set xrange [0:*]
set yrange [0.4:1.08]
set key at graph 0.98, graph 0.86 right top Left reverse samplen 2.5 spacing 1.2 box lc rgb '#cccccc' opaque
plot $plots
EOF
mv "$out.tmp" "$out"
