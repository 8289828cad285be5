#!/bin/sh
# protocol-select.sh SWEEPDIR: the paper's selection, on validation: for
# every row x estimator of the sweep (protocol-jobs.sh sweep), the setting
# (learning rate, and for the VAE's temperature estimators the annealing N
# and r) whose run ends with the lowest validation figure, as CSV on stdout.
# The figure is the one the paper reports, on the validation split:
#   SBN  -log p(x_lower|x_upper) with 20 samples (the run's valid_nll);
#   VAE  the importance-weighted bound with PROTOCOL_SELECT_IW (default 100)
#        hard samples of q on every validation image: the run's own figure
#        (summary.json's valid_neg_log_px_iw, --valid-iw-samples, which the
#        sweep's lines ask for), or for a run without it, computed here from
#        the run's checkpoint (`gsvae eval --set valid`, the same figure) and
#        kept beside it in RUN/valid-iw.txt, so that a second selection reads
#        it back and the checkpoint may go.  (Not the
#        one-sample -ELBO the run logs: a code trained relaxed scores far
#        worse on it than on the bound, which would bias the choice
#        against the relaxed estimators; results/protocol/README.md.)
# Columns:
#   row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run
# The setting is read from the run's summary.json.  n_settings counts the
# finished runs the choice was made among (the grid has 6 settings per
# cell, 24 with the annealing grid: protocol-lib.sh), so a choice made on a
# partial sweep says so.  Runs that diverged (no summary) or were
# interrupted are not candidates.
set -eu
dir=${1:?usage: scripts/protocol-select.sh SWEEPDIR}
. "$(dirname "$0")/protocol-lib.sh"
. "$(dirname "$0")/plot/lib.sh"  # plot_json, plot_finished
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
iw=${PROTOCOL_SELECT_IW:-100}
# valid_iw RUN: the VAE run's validation bound with $iw samples (cached).
valid_iw() {
    # The figure itself, not only the flag: a run whose bound was not
    # finite records the flag without it, and is scored from its checkpoint.
    own=$(plot_json "$1/summary.json" valid_neg_log_px_iw)
    if [ -n "$own" ] && [ "$(plot_json "$1/summary.json" valid_iw_samples)" = "$iw" ]; then
        echo "$own"
        return 0
    fi
    f=$1/valid-iw.txt
    if ! grep -q "($iw importance samples)" "$f" 2>/dev/null; then
        "$bin" eval --ckpt "$1/model.ckpt" --data "$data" --set valid --images 1000000 \
            --iw-samples "$iw" --threads 1 > "$f.tmp" || { rm -f "$f.tmp"; return 1; }
        mv "$f.tmp" "$f"
    fi
    sed -n 's/^valid -log p(x) ~ \([0-9.]*\) nats.*/\1/p' "$f"
}
echo "row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run"
for row in $protocol_rows; do
    key=valid_nll
    for est in $(row_estimators $row); do
        # "$row-st-lr*" does not match st-gumbel's runs, nor "$row-arm-lr*"
        # disarm's.
        for s in "$dir"/runs/"$row-$est"-lr*/summary.json; do
            plot_finished "$s" || continue
            case $row in
            vae-*) v=$(valid_iw "$(dirname "$s")") || { echo "protocol-select.sh: $(dirname "$s"): cannot score it" >&2; continue; } ;;
            *) v=$(plot_json "$s" "$key") ;;
            esac
            [ -n "$v" ] || continue
            if uses_anneal $row $est; then
                N=$(plot_json "$s" anneal_every)
                r=$(plot_json "$s" anneal_rate)
            else
                N=- r=-
            fi
            echo "$v $(plot_json "$s" lr) $N $r $(basename "$(dirname "$s")")"
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
