#!/bin/sh
# gumbel-vae.sh OUT.png CATEGORICAL_RUN BERNOULLI_RUN: the paper's VAE trained
# with Gumbel-Softmax, one panel per latent type: the test -ELBO with a hard
# code at each evaluation, the relaxed bound where the log has it, the
# training loss (the relaxed objective, every logged step), and the paper's
# value (dashed).  The y axis is zoomed on the steps from the first
# evaluation after step 0 onwards; the early training loss runs off the top.
set -eu
[ $# -eq 3 ] || { echo "usage: scripts/plot/gumbel-vae.sh OUT.png CATEGORICAL_RUN BERNOULLI_RUN" >&2; exit 2; }
out=$1
PLOT_DIR=$(dirname "$0")
. "$PLOT_DIR/lib.sh"
command -v gnuplot > /dev/null 2>&1 || { echo "gumbel-vae.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gp=$tmp/plot.gp
{
    echo "W = 1000; H = 900"
    echo "load '$PLOT_DIR/style.gp'"
    echo "set output '$out.tmp'"
    echo "set datafile separator ','"
    echo "set key top right Left reverse samplen 2.2 spacing 1.2 box lc rgb '#cccccc' opaque"
    echo "set xlabel 'training step'"
    echo "set ylabel 'nats'"
    echo "set xrange [0:*]"
    printf 'set multiplot layout 2,1 title "The paper'"'"'s VAE trained with Gumbel-Softmax (seed 1)\\n{/*0.8 784-512-256 ReLU encoder, mirrored decoder, 50,000 steps; the paper'"'"'s Table 1 value dashed}" font ",15"\n'
} > "$gp"
for pair in "categorical:$2" "Bernoulli:$3"; do
    name=${pair%%:*} run=${pair#*:}
    log=$run/log.csv
    [ -f "$log" ] || { echo "gumbel-vae.sh: $log: missing" >&2; exit 1; }
    lt=$(echo "$name" | tr 'A-Z' 'a-z')
    paper=$(plot_paper "vae-$lt" gumbel)
    latent=$(sed -n 's/.*"latent": *"\([^"]*\)".*/\1/p' "$run/summary.json" | head -n 1)
    # Columns by name; the y range from the rows at or after the first
    # evaluation after step 0, and the paper's value.
    set -- $(awk -F, -v paper="$paper" '
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $1 + 0 > 0 && !first && $c["test_neg_elbo"] != "" { first = $1 }
        first && $1 + 0 >= first {
            for (k in want) if (c[k] && $c[k] != "") { v = $c[k] + 0; if (v < lo) lo = v; if (v > hi) hi = v }
        }
        BEGIN { lo = 1e30; hi = -1e30; want["train_loss"]; want["test_neg_elbo"]; want["test_neg_elbo_relaxed"] }
        END {
            if (paper != "") { if (paper < lo) lo = paper; if (paper > hi) hi = paper }
            pad = (hi - lo) * 0.06
            printf "%g %g %d %d %d\n", lo - pad, hi + pad, c["train_loss"], c["test_neg_elbo"], c["test_neg_elbo_relaxed"]
        }' "$log")
    lo=$1 hi=$2 ctrain=$3 ctest=$4 crelax=$5
    final=$(plot_json "$run/summary.json" test_neg_elbo)
    final=$(printf '%.2f' "$final")
    plots="'$log' using 1:$ctrain every ::1 with lines lc rgb '#99d62728' lw 1.2 title 'training loss (relaxed)'"
    plots="$plots, '$log' using (\$1 > 0 ? \$1 : NaN):$ctest with linespoints lt est_lt('gumbel') title 'test −ELBO, hard code (final $final)'"
    [ "$crelax" -gt 0 ] &&
        plots="$plots, '$log' using (\$1 > 0 ? \$1 : NaN):$crelax with linespoints lt est_lt('gumbel') pt 6 dt (4,3) title 'test −ELBO, relaxed code'"
    [ -n "$paper" ] &&
        plots="$plots, $paper with lines lt est_lt('gumbel') lw 1.8 dt PAPER title 'paper: $paper'"
    {
        echo "set yrange [$lo:$hi]"
        if [ "$lt" = categorical ]; then
            echo "set title \"categorical latents (${latent%x*} variables of ${latent#*x} classes)\" font ',14'"
        else
            echo "set title \"Bernoulli latents ($latent units)\" font ',14'"
        fi
        echo "plot $plots"
    } >> "$gp"
done
echo "unset multiplot" >> "$gp"
gnuplot "$gp"
mv "$out.tmp" "$out"
