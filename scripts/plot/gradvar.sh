#!/bin/sh
# gradvar.sh OUT.png TITLE CSV:LABEL [CSV:LABEL ...]: the gradient-variance
# figure from `gsvae gradvar --csv` outputs, one column of panels per CSV
# (at most four), headed by its LABEL:
#   top     each estimator's total variance (the trace of the covariance of
#           its estimates), on a log axis;
#   bottom  where the CSV has the exact gradient (a code small enough to
#           enumerate): the norm of each estimator's bias, the distance of
#           its mean from the exact gradient, beside the noise floor (grey
#           bar: the standard error of that distance, sqrt(variance / S)),
#           so that an unbiased estimator's dot sits at its bar and a biased
#           one's beyond it.  A CSV without it (rel_bias nan) gets the mean
#           cosine to the estimator's own mean instead.
# exact itself (no variance) is left out; so is any row whose variance is
# not a positive number.
set -eu
[ $# -ge 3 ] || { echo "usage: scripts/plot/gradvar.sh OUT.png TITLE CSV:LABEL [CSV:LABEL ...]" >&2; exit 2; }
out=$1 title=$2
shift 2
[ $# -le 4 ] || { echo "gradvar.sh: at most 4 CSV files, not $#" >&2; exit 2; }
PLOT_DIR=$(dirname "$0")
command -v gnuplot > /dev/null 2>&1 || { echo "gradvar.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
tmp=$out.tmp.d
rm -rf "$tmp"
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
# Per CSV i: $tmp/i.dat, "row estimator total_var bias_norm noise_floor
# mean_cos", rows numbered from the top; $tmp/i.label its LABEL, $tmp/i.exact
# "1 LO" if it has a finite bias (LO: the bias panel's left edge, a third
# of its smallest bias or floor), else "0 ...".
i=0
for spec in "$@"; do
    csv=${spec%%:*} label=${spec#*:}
    [ "$label" != "$spec" ] || label=$csv
    [ -f "$csv" ] || { echo "gradvar.sh: $csv: missing" >&2; exit 1; }
    head -n 1 "$csv" | grep -q '^estimator,.*total_var,bias_norm,rel_bias,noise_floor,mean_cos' ||
        { echo "gradvar.sh: $csv: not a gsvae gradvar --csv output (its header)" >&2; exit 1; }
    i=$((i + 1))
    awk -F, 'FNR == 1 { for (c = 1; c <= NF; c++) col[$c] = c; next }
        $1 != "exact" && $(col["total_var"]) + 0 > 0 {
            n++; line[n] = $1 " " $(col["total_var"]) " " $(col["bias_norm"]) " " \
                          $(col["noise_floor"]) " " $(col["mean_cos"])
            b = $(col["bias_norm"]) + 0; f = $(col["noise_floor"]) + 0
            if ($(col["bias_norm"]) != "nan") exact = 1
            if (b > 0 && (lo == "" || b < lo)) lo = b
            if (f > 0 && (lo == "" || f < lo)) lo = f
        }
        END { for (r = 1; r <= n; r++) print n - r, line[r]; print exact + 0, lo / 3 > "/dev/stderr" }' \
        "$csv" > "$tmp/$i.dat" 2> "$tmp/$i.exact"
    [ -s "$tmp/$i.dat" ] || { echo "gradvar.sh: $csv: no estimator with a positive variance" >&2; exit 1; }
    printf '%s\n' "$label" > "$tmp/$i.label"
done
n=$i
{
    echo "W = $((440 * n + 60)); H = 820"
    echo "load '$PLOT_DIR/style.gp'"
    echo "set output '$out.tmp'"
    echo "set multiplot layout 2,$n title \"$title\" font ',14'"
    echo "set format x '10^{%T}'"
    echo "set logscale x"
    echo "set grid noxtics"
    echo "set offsets 0, 0, 0.6, 0.6"
    echo "set bars 0"
    echo "set lmargin 22"
    echo "set rmargin 5"
    # Top row: the variances.
    i=1
    while [ $i -le $n ]; do
        echo "set title \"$(cat "$tmp/$i.label")\""
        echo "set xlabel 'total variance'"
        echo "plot '$tmp/$i.dat' using 3:1:(est_lt(strcol(2))):ytic(est_label(strcol(2))) with points pt 7 ps 1.5 lc variable"
        i=$((i + 1))
    done
    # Bottom row: bias against the noise floor, or the cosine.
    i=1
    while [ $i -le $n ]; do
        echo "unset title"
        read -r exact lo < "$tmp/$i.exact"
        if [ "$exact" = 1 ]; then
            echo "set logscale x"
            echo "set format x '10^{%T}'"
            echo "set xtics autofreq"
            echo "set xrange [$lo:*]"
            echo "set xlabel 'bias norm (grey: noise floor)'"
            echo "plot '$tmp/$i.dat' using ($lo):1:($lo):5:(\$1 - 0.2):(\$1 + 0.2) with boxxyerror fs solid 1.0 noborder lc rgb '#cccccc', \\"
            echo "     '' using 4:1:(est_lt(strcol(2))):ytic(est_label(strcol(2))) with points pt 7 ps 1.5 lc variable"
        else
            echo "unset logscale x"
            echo "set format x '%g'"
            echo "set xrange [0:1]"
            echo "set xtics 0.25"
            echo "set xlabel 'cosine to own mean'"
            echo "plot '$tmp/$i.dat' using 6:1:(est_lt(strcol(2))):ytic(est_label(strcol(2))) with points pt 7 ps 1.5 lc variable"
        fi
        i=$((i + 1))
    done
    echo "unset multiplot"
} > "$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
mv "$out.tmp" "$out"
