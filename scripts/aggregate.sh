#!/bin/sh
# aggregate.sh DIR [MODE]: DIR/README.md from DIR/runs/*/summary.json, our
# mean +- sd over seeds beside the paper's numbers, and DIR/figures/*.png
# (test loss against step per estimator as the paper's Figures 3 and 4, the
# temperature schedules, reconstruction grids) drawn by scripts/plot/.
set -eu
dir=$1
mode=${2:-full}
runs=$dir/runs
fig=$dir/figures
mkdir -p "$fig"
estimators="sf darn muprop st annealed-st gumbel st-gumbel"

# json FILE KEY: the number after "KEY": in a flat summary.json.
json() {
    sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1
}

# paper ROW ESTIMATOR: the paper's test loss in nats (its Table 1, the
# README's "Table 2"), from scripts/plot/paper-table1.txt.
PLOT_DIR=$(dirname "$0")/plot
. "$PLOT_DIR/lib.sh"
paper() {
    plot_paper "$1" "$2"
}

# values KEY FILES...: KEY of each summary that exists, one a line.
values() {
    key=$1; shift
    for f in "$@"; do
        [ -f "$f" ] && json "$f" "$key"
    done
}

# stats KEY FILES...: "mean sd n" of KEY over the summaries that exist.
stats() {
    values "$@" | awk '$1 != "" { s += $1; ss += $1 * $1; n++ }
        END { if (n == 0) { print "- - 0"; exit }
              m = s / n; v = n > 1 ? (ss - n * m * m) / (n - 1) : 0; if (v < 0) v = 0
              printf "%.2f %.2f %d\n", m, sqrt(v), n }'
}

# mean KEY FILES...: the unrounded mean of KEY (empty when none), for ratios.
mean() {
    values "$@" | awk '$1 != "" { s += $1; n++ } END { if (n > 0) printf "%.9g\n", s / n }'
}

# vae_table KEY TITLE: one row per latent type, one column per estimator.
vae_table() {
    tkey=$1
    echo "## $2"
    echo
    printf '| model |'
    for e in $estimators; do printf ' %s |' "$e"; done
    echo
    printf '|---|'
    for e in $estimators; do printf -- '---|'; done
    echo
    for lt in bernoulli categorical; do
        printf '| VAE %s |' "$lt"
        for e in $estimators; do
            set -- $(stats "$tkey" "$runs/vae-$lt-$e"-s*/summary.json)
            [ "$3" = 0 ] && printf ' — |' || printf ' %s ± %s |' "$1" "$2"
        done
        echo
    done
    echo
}

key_of() { [ "$1" = sbn ] && echo test_nll || echo test_neg_elbo; }

out=$dir/README.md
{
    echo "# Results ($mode mode)"
    echo
    if [ -f "$dir/wall_time.txt" ]; then
        read -r m secs cores < "$dir/wall_time.txt"
        echo "Produced by \`scripts/reproduce.sh $m\` (\`make reproduce$( [ "$m" = quick ] && echo -quick)\`) in $secs s of wall time on $cores cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))."
    fi
    # Training time summed over the finished jobs: the cost of the run even
    # when it was run in pieces (then no single wall time exists).
    for f in "$runs"/*/summary.json; do [ -f "$f" ] && json "$f" train_seconds; done |
        awk '$1 != "" { s += $1; n++ }
            END { if (n) printf "The %d finished jobs trained for %.1f hours of one core in all (the sum of their summaries'"'"' train_seconds; their evaluations, importance sampling included, come on top).\n\n", n, s / 3600 }'
    if [ -f "$dir/jobs.txt" ]; then
        total=$(wc -l < "$dir/jobs.txt")
        finished=$(sed 's/.*--out //' "$dir/jobs.txt" | while read -r d; do plot_finished "$d/summary.json" && echo; done | wc -l)
        [ "$finished" -lt "$total" ] && echo "**Partial: $finished of the $total jobs in jobs.txt have finished**; a cell shows how many seeds it has (n), a dash none. Rerunning the same command runs only the rest." && echo
    fi
    echo "Every cell: our mean ± sd over the seeds that finished (n), the paper's value, and ours minus the paper's."
    echo "Test loss in nats: -log p(x_lower | x_upper) for the SBN rows, the negative ELBO for the VAE rows"
    echo "(one hard, truly discrete sample of the code per test image, on the fixed binarization of the test set)."
    echo "Setups and the source of every hyper-parameter: results/SETUP.md in the repository."
    echo
    echo "## Table 2 of the paper: test loss per estimator"
    echo
    printf '| model |'
    for e in $estimators; do printf ' %s |' "$e"; done
    echo
    printf '|---|'
    for e in $estimators; do printf -- '---|'; done
    echo
    for task in sbn vae; do
        for lt in bernoulli categorical; do
            printf '| %s %s |' "$(echo $task | tr a-z A-Z)" "$lt"
            for e in $estimators; do
                set -- $(stats "$(key_of $task)" "$runs/$task-$lt-$e"-s*/summary.json)
                p=$(paper "$task-$lt" "$e")
                if [ "$3" = 0 ]; then
                    printf ' — (paper %s) |' "$p"
                else
                    d=$(awk -v a="$1" -v b="$p" 'BEGIN { printf "%+.1f", a - b }')
                    printf ' %s ± %s (n=%s)<br>paper %s, Δ %s |' "$1" "$2" "$3" "$p" "$d"
                fi
            done
            echo
        done
    done
    echo
    vae_table test_neg_elbo_relaxed "VAE: the relaxed bound (the code relaxed at the final tau; the objective the relaxed estimators train)"
    vae_table test_neg_log_px_iw "VAE: importance-sampled -log p(x), 1000 samples (not in the paper)"
    # The rows beyond the paper (GSVAE_BEYOND=1), where any ran.
    beyond=0
    for d in "$runs"/vae-*-arm-s* "$runs"/vae-*-disarm-s* "$runs"/vae-*-rebar-s* \
        "$runs"/vae-*-relax-s* "$runs"/vae-*-vimco-k5-s* "$runs"/vae-*-gumbel-k5-s* "$runs"/vae-*-gumbel-taulearned-s*; do
        [ -d "$d" ] && beyond=1
    done
    if [ $beyond = 1 ]; then
        estimators="arm disarm rebar relax vimco-k5 gumbel-k5 gumbel-taulearned"
        vae_table test_neg_elbo "VAE beyond the paper: test -ELBO (arm, disarm: Bernoulli only)"
        vae_table test_neg_log_px_iw "VAE beyond the paper: importance-sampled -log p(x), 1000 samples"
        estimators="sf darn muprop st annealed-st gumbel st-gumbel"
    fi
    echo "## Semi-supervised classification (M2), 100 labels"
    echo
    echo "| k | estimator | test accuracy | test -ELBO | steps/s | speed-up of gumbel over exact (paper) |"
    echo "|---|---|---|---|---|---|"
    for k in 10 100; do
        [ $k = 10 ] && pk=2 || pk=9.9
        for e in gumbel exact; do
            set -- $(stats test_accuracy "$runs/semisup-k$k-$e"-s*/summary.json)
            acc="$1 ± $2"
            set -- $(stats test_neg_elbo "$runs/semisup-k$k-$e"-s*/summary.json)
            elbo="$1 ± $2"
            set -- $(stats steps_per_second "$runs/semisup-k$k-$e"-s*/summary.json)
            sps=$1
            su=""
            if [ $e = exact ]; then
                g=$(mean steps_per_second "$runs/semisup-k$k-gumbel"-s*/summary.json)
                x=$(mean steps_per_second "$runs/semisup-k$k-exact"-s*/summary.json)
                su=$(awk -v g="$g" -v x="$x" -v p="$pk" 'BEGIN { if (g + 0 > 0 && x + 0 > 0) printf "%.1fx (%sx)", g / x, p; else printf "— (%sx)", p }')
            fi
            echo "| $k | $e | $acc | $elbo | $sps | $su |"
        done
    done
    echo
    echo "Each cell's flags are its line of jobs.txt (the k = 10 cells weigh the labelled and"
    echo "unlabelled -ELBO alike, \`--weighting batch\`; at k = 100 the labels stay 0..9, so its"
    echo "accuracy means little and the cell times a step)."
    echo
    echo "## Figures"
    echo
} > "$out.tmp"

# Figures (scripts/plot/: one look for all): test loss against step per
# estimator, mean over seeds, the counterparts of the paper's Figures 3
# (SBN) and 4 (VAE); the temperature schedules.  Without gnuplot the tables
# are still written, and the figures are left as they are.
if command -v gnuplot > /dev/null 2>&1; then
    echo "Test loss against training step per estimator, the mean over seeds (the paper's Figures 3" >> "$out.tmp"
    echo "and 4); the legend gives each estimator's final figure (the table's) and the paper's, which" >> "$out.tmp"
    echo "is also drawn as a dashed line in the estimator's colour." >> "$out.tmp"
    echo >> "$out.tmp"
    for spec in sbn:figure3-sbn vae:figure4-vae; do
        task=${spec%%:*} png=${spec#*:}.png
        sh "$PLOT_DIR/curves.sh" "$runs" "$task" "$fig/$png" &&
            echo "![$task: test loss per estimator](figures/$png)" >> "$out.tmp"
    done
    sh "$PLOT_DIR/tau.sh" "$runs" "$fig/tau.png" &&
        echo "![temperature schedules](figures/tau.png)" >> "$out.tmp"
else
    echo "aggregate.sh: warning: gnuplot not found; figures not drawn (scripts/install-deps.sh installs it)" >&2
fi
# Reconstruction grids per estimator (seed 1, VAE).
echo >> "$out.tmp"
for lt in bernoulli categorical; do
    for e in $estimators; do
        src="$runs/vae-$lt-$e-s1/recon.png"
        [ -f "$src" ] || continue
        cp "$src" "$fig/recon-vae-$lt-$e.png.tmp" && mv "$fig/recon-vae-$lt-$e.png.tmp" "$fig/recon-vae-$lt-$e.png"
        echo "- VAE $lt, $e: [recon](figures/recon-vae-$lt-$e.png)" >> "$out.tmp"
    done
done
mv "$out.tmp" "$out"
echo "aggregate.sh: wrote $out"
