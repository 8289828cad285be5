# lib.sh: shell helpers of the figure scripts (sourced, not run).
# PLOT_DIR must name this directory.

PLOT_ESTIMATORS="sf darn muprop st annealed-st gumbel st-gumbel"
# The estimators curves.sh draws, in this order (the paper's by default).
PLOT_CURVES=${PLOT_CURVES:-$PLOT_ESTIMATORS}

# plot_json FILE KEY: the number after "KEY": in a flat summary.json.
plot_json() {
    sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1
}

# plot_finished FILE: whether the run of summary.json FILE ended (the file
# exists and does not say "interrupted": true).
plot_finished() {
    [ -f "$1" ] && ! grep -q '"interrupted": true' "$1"
}

# plot_paper ROW ESTIMATOR: the paper's value (Table 1), empty if none.
plot_paper() {
    awk -v row="$1" -v est="$2" -v list="$PLOT_ESTIMATORS" '
        BEGIN { n = split(list, e, " "); for (i = 1; i <= n; i++) if (e[i] == est) col = i + 1 }
        !/^#/ && $1 == row && col { print $col }' "$PLOT_DIR/paper-table1.txt"
}

# plot_seed_mean COLUMN FILES...: "step mean sd n" per step over the log.csv
# FILES (one per seed), for the rows where COLUMN (a header name) has a
# value, from the first step after 0 (step 0 is the untrained model, far
# above the rest: it would flatten every curve).
plot_seed_mean() {
    col=$1; shift
    awk -F, -v name="$col" '
        FNR == 1 { c = 0; for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
        c && $1 + 0 > 0 && $c != "" {
            s[$1] += $c; ss[$1] += $c * $c; n[$1]++
            if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }
        }
        END {
            for (i = 1; i <= k; i++) {
                t = order[i]; m = s[t] / n[t]
                v = n[t] > 1 ? (ss[t] - n[t] * m * m) / (n[t] - 1) : 0
                printf "%s %.4f %.4f %d\n", t, m, (v > 0 ? sqrt(v) : 0), n[t]
            }
        }' "$@" | sort -n
}

# plot_summary_mean KEY FILES...: "mean n" of KEY over the summary.json FILES
# that exist (empty when none).
plot_summary_mean() {
    key=$1; shift
    for f in "$@"; do
        [ -f "$f" ] && plot_json "$f" "$key"
    done | awk '$1 != "" { s += $1; n++ } END { if (n) printf "%.2f %d\n", s / n, n }'
}
