#!/bin/sh
# protocol-table.sh DIR: Table 1 under the paper's protocol from DIR/chosen.csv
# (protocol-select.sh) and DIR/final/runs/*/summary.json (protocol-jobs.sh
# final; PROTOCOL_RUNS names another runs directory): DIR/table1.csv with
# the columns
#   row,estimator,mean,sd,n,paper,lr,anneal_N,anneal_r
# (VAE: the test m = 1000 importance-weighted bound with hard samples,
# test_neg_log_px_iw; SBN: test -log p(x_lower|x_upper) with 1000 samples,
# test_nll; mean and sample sd over the seeds that finished the row's final
# budget, protocol-lib.sh's final_steps, so that a cell never mixes budgets
# while its runs are continued to a raised one; lr, anneal_N
# and anneal_r "-" while the cell's sweep is not complete; paper: the
# published figure, protocol-lib.sh's reference, which for
# PROTOCOL_READING=beyond is the ARM paper's), DIR/table1.md
# (the same beside the published values, for README.md), and the learning
# curves of the final runs per row, DIR/figures/curves-{sbn,vae}.png.
set -eu
dir=${1:?usage: scripts/protocol-table.sh DIR}
PLOT_DIR=$(dirname "$0")/plot
. "$(dirname "$0")/protocol-lib.sh"
. "$PLOT_DIR/lib.sh"
chosen=$dir/chosen.csv
runs=${PROTOCOL_RUNS:-$dir/final/runs}
[ -f "$chosen" ] || { echo "protocol-table.sh: $chosen missing" >&2; exit 2; }
csv=$dir/table1.csv
md=$dir/table1.md
echo "row,estimator,mean,sd,n,paper,lr,anneal_N,anneal_r" > "$csv.tmp"
# Every cell of the paper's table, chosen or not yet.
for row in $protocol_rows; do
for est in $(row_estimators $row); do
    lr=- N=- r=- nset=0
    line=$(grep "^$row,$est," "$chosen" | head -n 1) || true
    [ -n "$line" ] && IFS=, read -r _ _ lr N r _ nset _ <<EOF2
$line
EOF2
    # A choice made on part of the grid is no choice yet: its setting is
    # left out ("-"), as protocol-jobs.sh runs no final for it.
    grid=$(grid_size $row $est)
    [ "$nset" -lt $grid ] && lr=- N=- r=-
    key=test_neg_log_px_iw
    case $row in sbn-*) key=test_nll ;; esac
    steps=$(final_steps $row)
    for s in "$runs/$row-$est"-s*/summary.json; do
        plot_finished "$s" || continue
        [ "$(plot_json "$s" steps_done)" -ge "$steps" ] || continue
        plot_json "$s" "$key"
    done | awk -v row="$row" -v est="$est" -v paper="$(reference "$row" "$est")" \
        -v lr="$lr" -v N="$N" -v r="$r" '
        $1 != "" { s += $1; ss += $1 * $1; n++ }
        END {
            if (n == 0) { printf "%s,%s,,,0,%s,%s,%s,%s\n", row, est, paper, lr, N, r; exit }
            m = s / n; v = n > 1 ? (ss - n * m * m) / (n - 1) : 0; if (v < 0) v = 0
            sd = n > 1 ? sprintf("%.2f", sqrt(v)) : ""  # no sd of one seed
            printf "%s,%s,%.2f,%s,%d,%s,%s,%s,%s\n", row, est, m, sd, n, paper, lr, N, r
        }'
done
done >> "$csv.tmp"
mv "$csv.tmp" "$csv"

# The Markdown table: one line per row, ours (mean ± sd, n) above the paper's;
# one column per estimator of the first row (the other rows' cells in the
# same columns; a cell a row lacks is "–").
cols=$(row_estimators ${protocol_rows%% *})
awk -F, -v cols="$cols" -v refname="$reference_name" '
    NR == 1 { next }
    {
        key = $1 SUBSEP $2
        cell[key] = $5 > 1 ? sprintf("%s ± %s (n=%s)", $3, $4, $5) : $5 == 1 ? sprintf("%s (n=1)", $3) : "–"
        paper[key] = $6; set[key] = $7 ($8 != "-" ? ", N " $8 ", r " $9 : "")
        if (!($1 in seenrow)) { seenrow[$1] = 1; rows[++nr] = $1 }
    }
    END {
        nc = split(cols, E, " ")
        split("sf darn muprop st annealed-st gumbel st-gumbel", P, " ")
        split("SF|DARN|MuProp|ST|Annealed ST|Gumbel-S.|ST Gumbel-S.", PN, "|")
        for (j = 1; j <= 7; j++) name[P[j]] = PN[j]
        printf "| row |"
        for (j = 1; j <= nc; j++) printf " %s |", (E[j] in name) ? name[E[j]] : E[j]
        printf "\n|---|"
        for (j = 1; j <= nc; j++) printf "---|"
        printf "\n"
        for (i = 1; i <= nr; i++) {
            printf "| %s (ours) |", rows[i]
            for (j = 1; j <= nc; j++) printf " %s |", ((rows[i], E[j]) in cell) ? cell[rows[i], E[j]] : "–"
            printf "\n| %s (%s) |", rows[i], refname
            for (j = 1; j <= nc; j++) printf " %s |", paper[rows[i], E[j]]
            printf "\n| chosen lr (N, r) |"
            for (j = 1; j <= nc; j++) printf " %s |", ((rows[i], E[j]) in set) ? set[rows[i], E[j]] : "–"
            printf "\n"
        }
    }' "$csv" > "$md.tmp"
mv "$md.tmp" "$md"

mkdir -p "$dir/figures"
# The published figures of the reading (reference), for the curves.
refs=""
for row in $protocol_rows; do
    for e in $(row_estimators "$row"); do
        r=$(reference "$row" "$e")
        [ -z "$r" ] || refs="$refs $row-$e=$r"
    done
done
for task in sbn vae; do
    ls "$runs"/$task-*/log.csv > /dev/null 2>&1 || continue
    PLOT_CURVES=$(row_estimators vae-bernoulli) PLOT_MIN_STEPS=$(final_steps $task-bernoulli) \
        PLOT_REFERENCES=$refs PLOT_REFERENCE_NAME=$reference_name PLOT_TITLE="$figure_title" PLOT_YMAX=$figure_ymax sh "$PLOT_DIR/curves.sh" "$runs" $task "$dir/figures/curves-$task.png" ||
        echo "protocol-table.sh: curves-$task.png not drawn" >&2
done
echo "protocol-table.sh: $csv, $md"
