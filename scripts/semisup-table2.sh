#!/bin/sh
# semisup-table2.sh DIR: the paper's Table 2 from the finished runs of
# scripts/reproduce.sh semisup-paper (DIR/sweep) and semisup-paper-final
# (DIR/final), for marginalisation (exact), Gumbel-Softmax and ST
# Gumbel-Softmax:
#   DIR/table2.csv           alpha chosen on validation accuracy (ours)
#   DIR/table2-testpick.csv  alpha chosen on test accuracy (the paper's way),
#                            over the seeds that exist at that alpha (seed 1
#                            only, unless it is the validation choice)
# with the columns estimator,accuracy_mean,accuracy_sd,elbo_mean,elbo_sd,n,
# paper_accuracy,paper_elbo,alpha: test accuracy in percent and the test
# ELBO (y summed out exactly) in nats, mean and sample standard deviation
# over the n seeds, beside the paper's.  Also DIR/alpha.csv: every sweep run's
# validation and test accuracy and ELBO (empty where the run has not
# finished).  An estimator whose sweep has not finished has no alpha yet: its
# rows say n = 0 and leave alpha empty, so that the finals of the others
# (SEMISUP_ESTIMATORS, scripts/semisup-jobs.sh) have their table.
set -eu
[ $# -eq 1 ] || { echo "usage: scripts/semisup-table2.sh DIR" >&2; exit 2; }
dir=$1
cd "$(dirname "$0")/.."
. scripts/plot/lib.sh
alphas=${SEMISUP_ALPHAS:-0.1 0.2 0.3 0.8 1.0}
steps=${SEMISUP_STEPS:-50000} # the finals' budget, as scripts/semisup-jobs.sh
estimators="exact gumbel st-gumbel"

paper() { # EST -> "accuracy elbo" (J17 Table 2)
    case $1 in
    exact) echo "92.6 -106.8" ;;
    gumbel) echo "92.4 -109.6" ;;
    st-gumbel) echo "93.6 -110.7" ;;
    esac
}

# row EST ALPHA: the CSV row over the finished seeds 1-3 at ALPHA.
row() {
    for seed in 1 2 3; do
        d=$dir/final/runs/$1-a$2-s$seed
        # Seed 1 is the sweep's run unless the sweep was shorter than the
        # finals (scripts/semisup-jobs.sh), when it has its own in final/:
        # never the shorter sweep's run in its place.
        if [ $seed = 1 ] && [ ! -d "$d" ]; then
            d=$dir/sweep/runs/$1-a$2-s1
            [ "$(plot_json "$d/summary.json" steps)" = "$steps" ] || continue
        fi
        s=$d/summary.json
        plot_finished "$s" || continue
        echo "$(plot_json "$s" test_accuracy) $(plot_json "$s" test_neg_elbo)"
    done | awk -v est="$1" -v a="$2" -v p="$(paper "$1")" '
        { acc = 100 * $1; elbo = -$2; sa += acc; saa += acc * acc; se += elbo; see += elbo * elbo; n++ }
        END {
            split(p, pp, " ")
            if (!n) { printf "%s,,,,,0,%s,%s,%s\n", est, pp[1], pp[2], a; exit }
            ma = sa / n; me = se / n
            va = n > 1 ? (saa - n * ma * ma) / (n - 1) : 0
            ve = n > 1 ? (see - n * me * me) / (n - 1) : 0
            printf "%s,%.2f,%.2f,%.2f,%.2f,%d,%s,%s,%s\n", est, ma, (va > 0 ? sqrt(va) : 0), me,
                   (ve > 0 ? sqrt(ve) : 0), n, pp[1], pp[2], a
        }'
}

header="estimator,accuracy_mean,accuracy_sd,elbo_mean,elbo_sd,n,paper_accuracy,paper_elbo,alpha"
echo "$header" > "$dir/table2.csv.tmp"
echo "$header" > "$dir/table2-testpick.csv.tmp"
echo "estimator,alpha,valid_accuracy,test_accuracy,valid_elbo,test_elbo" > "$dir/alpha.csv.tmp"
for est in $estimators; do
    if va=$(sh scripts/semisup-jobs.sh pick "$dir/sweep" "$est" valid_accuracy 2> /dev/null) &&
        ta=$(sh scripts/semisup-jobs.sh pick "$dir/sweep" "$est" test_accuracy 2> /dev/null); then
        row "$est" "$va" >> "$dir/table2.csv.tmp"
        row "$est" "$ta" >> "$dir/table2-testpick.csv.tmp"
    else
        echo "semisup-table2.sh: $est: its sweep has not finished, no alpha chosen (n = 0)" >&2
        p=$(paper "$est")
        echo "$est,,,,,0,${p% *},${p#* }," | tee -a "$dir/table2.csv.tmp" >> "$dir/table2-testpick.csv.tmp"
    fi
    for a in $alphas; do
        s=$dir/sweep/runs/$est-a$a-s1/summary.json
        if plot_finished "$s"; then
            echo "$est,$a,$(plot_json "$s" valid_accuracy),$(plot_json "$s" test_accuracy),-$(plot_json "$s" valid_neg_elbo),-$(plot_json "$s" test_neg_elbo)"
        else
            echo "$est,$a,,,,"
        fi >> "$dir/alpha.csv.tmp"
    done
done
for f in table2 table2-testpick alpha; do mv "$dir/$f.csv.tmp" "$dir/$f.csv"; done
echo "semisup-table2.sh: wrote $dir/table2.csv, $dir/table2-testpick.csv, $dir/alpha.csv"
