#!/bin/sh
# figure1.sh DIR: the counterpart of the paper's Figure 1.  Runs
# `gsvae gumbel-demo` (GSVAE_BIN, else ./gsvae) into DIR/gumbel-demo.csv and
# draws DIR/figure1.png from it: for each temperature (a column), the
# expected value of the Gumbel-Softmax sample per class (top row, beside
# the class probabilities) and one sample (bottom row; the same Gumbel
# noise at every temperature).  tau = 0 is the categorical distribution
# itself (the one-hot Gumbel-Max sample).  The paper gives its figure's
# class probabilities only as a picture; ours are gumbel-demo's defaults.
set -eu
[ $# -eq 1 ] || { echo "usage: scripts/plot/figure1.sh DIR" >&2; exit 2; }
dir=$1
csv=$dir/gumbel-demo.csv out=$dir/figure1.png
PLOT_DIR=$(dirname "$0")
bin=${GSVAE_BIN:-./gsvae}
nmean=100000 seed=1
mkdir -p "$dir"
echo "figure1.sh: $bin gumbel-demo --tau 0,0.1,0.5,1,10 --samples $nmean --rows 1 --seed $seed --out $csv"
"$bin" gumbel-demo --tau 0,0.1,0.5,1,10 --samples $nmean --rows 1 --seed $seed --out "$csv"
command -v gnuplot > /dev/null 2>&1 || { echo "figure1.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
head -n 1 "$csv" | grep -q '^kind,tau,sample,class,value$' ||
    { echo "figure1.sh: $csv: not a gsvae gumbel-demo CSV" >&2; exit 1; }
taus=$(awk -F, '$1 == "mean" && !seen[$2]++ { printf "%s ", $2 }' "$csv")
classes=$(awk -F, '$1 == "probs" { k++ } END { print k + 0 }' "$csv")
samples=$(awk -F, '$1 == "sample" && $3 == 1 { n++ } END { print n + 0 }' "$csv")
[ -n "$taus" ] && [ "$classes" -ge 2 ] && [ "$samples" -gt 0 ] ||
    { echo "figure1.sh: $csv: needs mean rows, class probabilities and sample 1" >&2; exit 1; }
ntau=$(echo $taus | wc -w)

gp=$(mktemp)
trap 'rm -f "$gp"' EXIT
{
    echo "W = $((150 + 190 * ntau)); H = 600"
    echo "load '$PLOT_DIR/style.gp'"
    echo "set output '$out.tmp'"
    echo "set datafile separator ','"
    echo "set style fill solid 0.85 border lc rgb '#8a1a1b'"
    echo "set boxwidth 0.7"
    echo "set xrange [0.4:$classes.6]"
    echo "set xtics 1,1,$classes scale 0"
    echo "set yrange [0:1]"
    echo "set ytics 0,0.5,1 format '%.1f'"
    echo "set grid noxtics ytics"
    left=$(awk -v w="$((150 + 190 * ntau))" 'BEGIN { printf "%.3f", 95 / w }')
    printf 'set multiplot layout 2,%d margins %s,0.985,0.12,0.76 spacing 0.025,0.15 title "Figure 1 (counterpart): Gumbel-Softmax samples go from categorical to uniform as τ grows\\n{/*0.8 top: expected value of each class (bars: mean of %s samples) beside the class probabilities p (black ticks)}\\n{/*0.8 bottom: one sample (seed %s), drawn with the same Gumbel noise in every column}" font ",14"\n' \
        "$ntau" "$left" "$(echo $nmean | sed 's/000$/,000/')" "$seed"
    for row in mean sample; do
        i=0
        for t in $taus; do
            i=$((i + 1))
            if [ "$t" = 0 ]; then title="categorical (τ → 0)"; else title="τ = $t"; fi
            [ $row = mean ] && echo "set title '$title' font ',14'" || echo "unset title"
            if [ $i = 1 ]; then
                [ $row = mean ] && echo "set ylabel 'expected value'" || echo "set ylabel 'one sample'"
                echo "set format y '%.1f'"
            else
                echo "unset ylabel; set format y ''"
            fi
            [ $row = sample ] && echo "set xlabel 'class'" || echo "unset xlabel"
            if [ $row = mean ]; then
                echo "plot '$csv' using 4:(strcol(1) eq 'mean' && \$2 == $t ? \$5 : NaN) with boxes lt est_lt('gumbel'), \\"
                echo "     '$csv' using (\$4 - 0.42):(strcol(1) eq 'probs' ? \$5 : NaN):(0.84):(0) with vectors nohead lc rgb '#000000' lw 3"
            else
                echo "plot '$csv' using 4:(strcol(1) eq 'sample' && \$3 == 1 && \$2 == $t ? \$5 : NaN) with boxes lt est_lt('gumbel')"
            fi
        done
    done
    echo "unset multiplot"
} > "$gp"
gnuplot "$gp"
mv "$out.tmp" "$out"
