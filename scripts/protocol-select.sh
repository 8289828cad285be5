#!/bin/sh
# protocol-select.sh SWEEPDIR: the paper's selection, on validation: for
# every row x estimator of the sweep (protocol-jobs.sh sweep), the setting
# (learning rate, and for the VAE's temperature estimators the annealing N
# and r) whose run ends with the lowest validation figure (VAE: the -ELBO
# with a hard code; SBN: -log p(x_lower|x_upper) with 20 samples), as CSV
# on stdout:
#   row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run
# The setting is read from the run's summary.json.  n_settings counts the
# finished runs the choice was made among (the grid has 6 settings per
# cell, 24 for the VAE's temperature estimators), so a choice made on a
# partial sweep says so.  Runs that diverged (no summary) or were
# interrupted are not candidates.
set -eu
dir=${1:?usage: scripts/protocol-select.sh SWEEPDIR}
json() {
    sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1
}
echo "row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run"
for row in sbn-bernoulli sbn-categorical vae-bernoulli vae-categorical; do
    key=valid_neg_elbo
    case $row in sbn-*) key=valid_nll ;; esac
    for est in sf darn muprop st annealed-st gumbel st-gumbel; do
        # "$row-st-lr*" does not match st-gumbel's runs.
        for s in "$dir"/runs/"$row-$est"-lr*/summary.json; do
            [ -f "$s" ] || continue
            grep -q '"interrupted": true' "$s" && continue
            v=$(json "$s" "$key")
            [ -n "$v" ] || continue
            tau=no
            case $row-$est in vae-*-gumbel | vae-*-st-gumbel | vae-*-annealed-st) tau=yes ;; esac
            if [ $tau = yes ]; then
                N=$(json "$s" anneal_every)
                r=$(json "$s" anneal_rate)
            else
                N=- r=-
            fi
            echo "$v $(json "$s" lr) $N $r $(basename "$(dirname "$s")")"
        done | sort -g | awk -v row="$row" -v est="$est" '
            NR == 1 { best = $0 }
            END {
                if (NR == 0) exit
                split(best, f, " ")
                r = f[4] == "-" ? "-" : sprintf("%g", f[4])
                printf "%s,%s,%g,%s,%s,%s,%d,%s\n", row, est, f[2], f[3], r, f[1], NR, f[5]
            }'
    done
done
