#!/bin/sh
# figure5a.sh CSV OUT.png: Figure 5a from scripts/figure5a.sh's CSV
# (k,estimator,steps_per_cpu_s,...): training steps per second of CPU time
# of Gumbel-Softmax and of marginalisation against the number of classes
# (left) and the speed-up, Gumbel-Softmax's steps/s over marginalisation's
# (right).
set -eu
[ $# -eq 2 ] || { echo "usage: scripts/plot/figure5a.sh CSV OUT.png" >&2; exit 2; }
csv=$1 out=$2
PLOT_DIR=$(dirname "$0")
command -v gnuplot > /dev/null 2>&1 || { echo "figure5a.sh: gnuplot not found; $out not drawn" >&2; exit 1; }
[ -f "$csv" ] || { echo "figure5a.sh: $csv: missing" >&2; exit 1; }
tmp=$out.data.tmp
# "k gumbel exact speedup" per k.
awk -F, 'NR > 1 { v[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; ks[++n] = $1 }; net = $7 }
    END { for (i = 1; i <= n; i++) { k = ks[i]; g = v[k, "gumbel"]; e = v[k, "exact"]
              printf "%s %s %s %s\n", k, g, e, (g != "" && e > 0 ? g / e : "?") }
          print net > "/dev/stderr" }' "$csv" 2> "$tmp.net" | sort -n > "$tmp"
net=$(cat "$tmp.net")
rm -f "$tmp.net"
gnuplot <<EOF
W = 1000; H = 440
load '$PLOT_DIR/style.gp'
set output '$out.tmp'
set multiplot layout 1,2 title "Semi-supervised M2 ($net networks, one thread): training speed against the number of classes" font ',14'
set format x "%g"
set xlabel 'classes K'
set xrange [0:110]
set ylabel 'training steps per CPU second'
set logscale y
set key top right samplen 2.5 spacing 1.2
plot '$tmp' using 1:2 with linespoints lt est_lt('gumbel') title 'Gumbel-Softmax', \
     '' using 1:3 with linespoints lt est_lt('exact') title 'marginalisation (exact)'
unset logscale y
set ylabel 'speed-up (Gumbel-Softmax / exact)'
set yrange [0:*]
plot '$tmp' using 1:4 with linespoints lt 9, \
     '' using 1:4:(sprintf("%.1fx", \$4)) with labels offset 0,1 notitle
unset multiplot
EOF
rm -f "$tmp"
mv "$out.tmp" "$out"
