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
# validation and test accuracy and ELBO.
set -eu
[ $# -eq 1 ] || { echo "usage: scripts/semisup-table2.sh DIR" >&2; exit 2; }
dir=$1
cd "$(dirname "$0")/.."
. scripts/plot/lib.sh
alphas=${SEMISUP_ALPHAS:-0.1 0.2 0.3 0.8 1.0}
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
        # finals (scripts/semisup-jobs.sh), when it has its own in final/.
        [ $seed = 1 ] && [ ! -d "$d" ] && d=$dir/sweep/runs/$1-a$2-s1
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
    va=$(sh scripts/semisup-jobs.sh pick "$dir/sweep" "$est" valid_accuracy)
    ta=$(sh scripts/semisup-jobs.sh pick "$dir/sweep" "$est" test_accuracy)
    row "$est" "$va" >> "$dir/table2.csv.tmp"
    row "$est" "$ta" >> "$dir/table2-testpick.csv.tmp"
    for a in $alphas; do
        s=$dir/sweep/runs/$est-a$a-s1/summary.json
        echo "$est,$a,$(plot_json "$s" valid_accuracy),$(plot_json "$s" test_accuracy),-$(plot_json "$s" valid_neg_elbo),-$(plot_json "$s" test_neg_elbo)" >> "$dir/alpha.csv.tmp"
    done
done
for f in table2 table2-testpick alpha; do mv "$dir/$f.csv.tmp" "$dir/$f.csv"; done
echo "semisup-table2.sh: wrote $dir/table2.csv, $dir/table2-testpick.csv, $dir/alpha.csv"
