#!/bin/sh
# reproduce.sh MODE [-j N] [--out DIR] [--only REGEX] [--sshloginfile FILE]
#              [--slurm] [--dry-run]
#
# Regenerates the paper's tables: every task x latent type x estimator x
# seed as an independent `gsvae train` command, one per line of DIR/jobs.txt.
# The list runs through an existing engine, not a loop of ours:
#   - GNU parallel (the default), N jobs at a time per host, with a job log
#     (DIR/joblog) so that a rerun resumes: finished jobs are skipped, failed
#     ones retried (--resume-failed).  --sshloginfile FILE spreads the jobs
#     over the hosts it lists (':' is this one); each host needs this
#     repository at the same path, built, with the data, on a file system
#     that all of them share (runs write under DIR/runs).
#   - Slurm: DIR/slurm.sh, written beside jobs.txt, is a job array over the
#     same lines (task i runs line i); --slurm submits it, and a dependent
#     job that writes the tables when the array is over.
# Each job runs through scripts/run-job.sh, which skips a job whose
# summary.json exists (so an interrupted grid resumes under either engine)
# and prints a progress line for the whole grid after each job:
# jobs done / total, time elapsed, an estimate of the time left
# (`scripts/run-job.sh DIR --progress` prints it at any time).  Finally
# scripts/aggregate.sh writes DIR/README.md (tables beside the paper's
# numbers) and the figures.
#
# MODE quick: small budgets that exercise every cell in minutes.
# MODE full:  the paper's budgets (days on two cores); writes results/full/.
# MODE tiny:  a few steps of small models, for the tests of the runner.
# MODE paper: Table 1 under the paper's own protocol, step 1: the sweep of
#             learning rates (and the VAE's annealing constants) scored on
#             validation (scripts/protocol-jobs.sh; results/protocol/sweep/);
#             no table yet (the sweep modes end with a pointer to step 2).
# MODE paper-final: step 2: the choice on validation
#             (scripts/protocol-select.sh, written to
#             results/protocol/chosen.csv) over seeds 1-3 on the test set
#             (results/protocol/final/); then the table
#             (scripts/protocol-table.sh, results/protocol/).
#             PROTOCOL_READING=deep: the same two steps for the other
#             reading of the paper's VAE (hidden layers of 512 and 256;
#             scripts/protocol-lib.sh), the VAE rows only, into
#             results/protocol/deep/{sweep,final}.  PROTOCOL_READING=beyond:
#             the same for the estimators after the paper (arm, disarm,
#             rebar, relax, vimco) on the paper's linear VAE, into
#             results/estimators-beyond/{sweep,final}.
# MODE semisup-paper: Table 2 with the paper's convolutional networks, step
#             1: every estimator (exact, gumbel, st-gumbel) x alpha in
#             {0.1, 0.2, 0.3, 0.8, 1.0}, seed 1, scored on validation and test
#             (scripts/semisup-jobs.sh; results/semisup/sweep/).
# MODE semisup-paper-final: step 2: each estimator at its alpha of the best
#             validation accuracy over seeds 1-3 (results/semisup/final/;
#             seed 1 is the sweep's run unless the sweep was shorter);
#             then results/semisup/table2.csv
#             (scripts/semisup-table2.sh).  Costs: results/semisup/networks.md.
# GSVAE_BEYOND=1 adds, in modes quick, full and tiny, the VAE rows beyond the
# paper: arm and disarm (Bernoulli only), rebar, relax, vimco and gumbel on
# the 5-sample bound, and gumbel with a learned temperature (both latent
# types), as vae-LT-arm-sN, vae-LT-vimco-k5-sN, vae-LT-gumbel-k5-sN,
# vae-LT-gumbel-taulearned-sN.
# --only REGEX runs the jobs whose run name (e.g. sbn-bernoulli-gumbel-s1)
# matches the extended regular expression, and those alone.  DIR/jobs.txt and
# DIR/slurm.sh still list the whole grid, so that line i is the same job
# whatever subset ran (a Slurm array or a `run-job.sh DIR i` started before
# stays right); GNU parallel keeps the subset's log in DIR/joblog-only (its
# Seq counts the selected jobs; another selection starts it afresh), --slurm
# submits the selected tasks (sbatch --array=i,j,...), and DIR/wall_time.txt,
# the whole grid's time, is left alone.  One reproduce.sh runs on a DIR at a
# time (DIR/.reproduce.lock): run two subsets of one DIR one after the other
# (or as one --only 'A|B').  --dry-run writes the job list and the Slurm
# script, and stops.
set -eu
usage="usage: scripts/reproduce.sh quick|full|tiny|paper|paper-final|semisup-paper|semisup-paper-final [-j N] [--out DIR] [--only REGEX] [--sshloginfile FILE] [--slurm] [--dry-run]"
mode=${1:-}
case $mode in quick | full | tiny | paper | paper-final | semisup-paper | semisup-paper-final) ;;
*) echo "$usage" >&2; exit 2 ;; esac
shift
jobs=$(nproc)
out=""
only=""
hosts=""
slurm=0
dry=0
while [ $# -gt 0 ]; do
    case $1 in
    -j) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; jobs=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; out=$2; shift 2 ;;
    --only) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; only=$2; shift 2 ;;
    --sshloginfile) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; hosts=$2; shift 2 ;;
    --slurm) slurm=1; shift ;;
    --dry-run) dry=1; shift ;;
    *) echo "reproduce.sh: unknown argument '$1'" >&2; echo "$usage" >&2; exit 2 ;;
    esac
done
case $jobs in
'' | *[!0-9]* | 0) echo "reproduce.sh: -j '$jobs': expected a positive number of jobs" >&2; exit 2 ;;
esac
[ -z "$hosts" ] || [ -f "$hosts" ] || { echo "reproduce.sh: --sshloginfile $hosts: no such file" >&2; exit 2; }
cd "$(dirname "$0")/.."
if [ -z "$out" ]; then
    case $mode in
    full) out=results/full ;;
    paper | paper-final)
        # The reading's own directory (scripts/protocol-lib.sh).
        case ${PROTOCOL_READING:-linear} in
        deep) base=results/protocol/deep ;;
        beyond) base=results/estimators-beyond ;;
        *) base=results/protocol ;;
        esac
        step=sweep
        [ $mode = paper-final ] && step=final
        out=$base/$step ;;
    semisup-paper) out=results/semisup/sweep ;;
    semisup-paper-final) out=results/semisup/final ;;
    *) out=runs/reproduce-$mode ;;
    esac
fi
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
[ -x "$bin" ] || { echo "reproduce.sh: $bin: not built (run make)" >&2; exit 1; }

estimators="sf darn muprop st annealed-st gumbel st-gumbel"
seeds="1 2 3"
# Budgets.  Full: the paper's VAE setup (50,000 steps of batch 100, Adam 1e-3,
# tau annealed to 0.5; see results/SETUP.md for the sources), the SBN task's
# defaults, and the semi-supervised task's defaults at k = 10.  At k = 100 the
# labels stay 0..9, so that cell only times a step (training steps/s, the
# evaluations excluded): 500 steps, as exact marginalisation over 100
# classes runs at under 1 step/s here (50,000 steps would take 19 hours).
# The k = 10 cells (accuracy) weigh the labelled and unlabelled batches'
# -ELBO alike (--weighting batch): under Kingma et al.'s dataset weights the
# Gumbel-Softmax classifier stays near uniform (results/README.md).
if [ "$mode" = full ]; then
    vae_budget="--steps 50000 --eval-every 5000 --iw-samples 1000"
    sbn_budget="--steps 50000 --eval-every 5000"
    semi_budget="--steps 50000 --eval-every 5000"
    semi_speed_budget="--steps 500 --eval-every 500"
elif [ "$mode" = tiny ]; then
    vae_budget="--steps 20 --eval-every 10 --eval-images 200 --iw-samples 0 --hidden 32"
    sbn_budget="--steps 20 --eval-every 10 --eval-samples 2 --eval-images 200 --test-samples 5"
    semi_budget="--steps 4 --eval-every 4 --eval-images 100"
    semi_speed_budget=$semi_budget
else
    vae_budget="--steps 300 --eval-every 100 --eval-images 1000 --iw-samples 0"
    sbn_budget="--steps 300 --eval-every 100 --eval-samples 10 --eval-images 1000 --test-samples 100"
    semi_budget="--steps 50 --eval-every 50 --eval-images 500"
    semi_speed_budget=$semi_budget
fi

mkdir -p "$out/runs"
# One reproduce.sh at a time per DIR: a second one would rewrite jobs.txt,
# and so renumber the jobs, under the first one's GNU parallel.  The lock,
# DIR/.reproduce.lock, holds its owner's pid; one whose process is gone (a
# reproduce.sh killed by SIGKILL) is taken over.
lock=$out/.reproduce.lock
if ! mkdir "$lock" 2> /dev/null; then
    pid=$(cat "$lock/pid" 2> /dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; then
        echo "reproduce.sh: $out: in use by another reproduce.sh (pid $pid): wait for it, or give another --out" >&2
        exit 1
    fi
    rm -rf "$lock"
    mkdir "$lock" || { echo "reproduce.sh: $out: cannot take its lock $lock" >&2; exit 1; }
fi
echo $$ > "$lock/pid"
trap 'rm -rf "$lock"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
joblist="$out/jobs.txt"
: > "$joblist.tmp"
case $mode in
paper)
    GSVAE_BIN=$bin GSVAE_DATA=$data sh scripts/protocol-jobs.sh sweep "$out" > "$joblist.tmp" ;;
paper-final)
    sh scripts/protocol-select.sh "$(dirname "$out")/sweep" > "$(dirname "$out")/chosen.csv"
    GSVAE_BIN=$bin GSVAE_DATA=$data sh scripts/protocol-jobs.sh final "$out" "$(dirname "$out")/chosen.csv" > "$joblist.tmp" ;;
semisup-paper)
    GSVAE_BIN=$bin GSVAE_DATA=$data sh scripts/semisup-jobs.sh sweep "$out" > "$joblist.tmp" ;;
semisup-paper-final)
    GSVAE_BIN=$bin GSVAE_DATA=$data sh scripts/semisup-jobs.sh final "$out" "$(dirname "$out")/sweep" > "$joblist.tmp" ;;
esac
case $mode in paper* | semisup-paper*) ;; *)
for task in sbn vae; do
    for lt in bernoulli categorical; do
        for est in $estimators; do
            for seed in $seeds; do
                name="$task-$lt-$est-s$seed"
                budget=$vae_budget
                [ $task = sbn ] && budget=$sbn_budget
                echo "$bin train --task $task --data $data --latent-type $lt --estimator $est --seed $seed $budget --quiet --threads 1 --out $out/runs/$name" >> "$joblist.tmp"
            done
        done
    done
done
# Beyond the paper (GSVAE_BEYOND=1): "run-name-part|flags" per latent type.
if [ "${GSVAE_BEYOND:-0}" = 1 ]; then
    for lt in bernoulli categorical; do
        rows="rebar|--estimator rebar
relax|--estimator relax
vimco-k5|--estimator vimco --samples 5
gumbel-k5|--estimator gumbel --samples 5
gumbel-taulearned|--estimator gumbel --tau learned"
        [ $lt = bernoulli ] && rows="arm|--estimator arm
disarm|--estimator disarm
$rows"
        echo "$rows" | while IFS='|' read -r part flags; do
            for seed in $seeds; do
                name="vae-$lt-$part-s$seed"
                echo "$bin train --task vae --data $data --latent-type $lt $flags --seed $seed $vae_budget --quiet --threads 1 --out $out/runs/$name" >> "$joblist.tmp"
            done
        done
    done
fi
# Semi-supervised: Gumbel-Softmax against exact marginalisation, k = 10 and 100.
for est in gumbel exact; do
    for k in 10 100; do
        for seed in $seeds; do
            name="semisup-k$k-$est-s$seed"
            budget="$semi_budget --weighting batch"
            [ $k = 100 ] && budget=$semi_speed_budget
            echo "$bin train --task semisup --data $data --labels 100 --classes $k --estimator $est --seed $seed $budget --quiet --threads 1 --out $out/runs/$name" >> "$joblist.tmp"
        done
    done
done
;; esac
total=$(grep -c . "$joblist.tmp" || true)
if [ "$total" -eq 0 ]; then
    echo "reproduce.sh: no jobs to list (for $mode: nothing chosen on a whole sweep yet?)" >&2
    rm -f "$joblist.tmp"
    exit 2
fi
# The line numbers to run, one a line: every line, or with --only those whose
# run name (the last part of --out) matches.
lines=$(awk -v re="$only" '{ n = $0; sub(/.*\//, "", n); if (re == "" || n ~ re) print NR }' "$joblist.tmp")
if [ -z "$lines" ]; then
    echo "reproduce.sh: no job matches --only '$only'" >&2
    rm -f "$joblist.tmp"
    exit 2
fi
selected=$(printf '%s\n' "$lines" | grep -c .)
log=$out/joblog
[ -n "$only" ] && log=$out/joblog-only
# A job log numbers the jobs of one list: a different list starts afresh.
if [ -f "$joblist" ] && ! cmp -s "$joblist" "$joblist.tmp"; then
    rm -f "$out/joblog" "$out/joblog-only" "$out/joblog-only.lines"
fi
mv "$joblist.tmp" "$joblist"

# The Slurm array over the same list: task i runs line i.
# The conv decoder under exact marginalisation holds about 0.5 GB.
mem=1G
case $mode in semisup-paper*) limit=30:00:00 mem=2G ;; full | paper*) limit=03:00:00 ;; quick) limit=00:15:00 ;; tiny) limit=00:05:00 ;; esac
{
    echo "#!/bin/sh"
    echo "# Slurm job array over $joblist (written by scripts/reproduce.sh $mode): task i"
    echo "# runs line i through scripts/run-job.sh, which skips a finished job.  Submit"
    echo "# from the repository root: sbatch $out/slurm.sh (options given to sbatch,"
    echo "# e.g. --partition or --array=1-$total%8, override those below)."
    echo "#SBATCH --job-name=gsvae-$mode"
    echo "#SBATCH --array=1-$total"
    echo "#SBATCH --cpus-per-task=1"
    echo "#SBATCH --mem=$mem"
    echo "#SBATCH --time=$limit"
    echo "#SBATCH --output=$out/runs/slurm-%a.out"
    echo '[ -f scripts/run-job.sh ] || { echo "submit from the repository root" >&2; exit 2; }'
    echo "exec sh scripts/run-job.sh $out \"\$SLURM_ARRAY_TASK_ID\""
} > "$out/slurm.sh.tmp"
mv "$out/slurm.sh.tmp" "$out/slurm.sh"

# The finished jobs' line numbers, read once for the counts and the job log,
# and their places in the selection (GNU parallel's Seq: see below).
done_lines=$(sh scripts/run-job.sh "$out" --done)
finished=$(printf '%s' "$done_lines" | grep -c . || true)
done_seqs=$(printf '%s\n' "$done_lines" | awk -v sel="$(echo $lines)" '
    BEGIN { n = split(sel, l, " ") }
    { d[$1] = 1 }
    END { for (i = 1; i <= n; i++) if (l[i] in d) print i }')
if [ -n "$only" ]; then
    sel_done=$(printf '%s' "$done_seqs" | grep -c . || true)
    echo "reproduce.sh: $total jobs in $joblist ($finished done already); --only '$only' runs $selected of them ($sel_done done already); Slurm array: $out/slurm.sh"
else
    echo "reproduce.sh: $total jobs in $joblist ($finished done already); Slurm array: $out/slurm.sh"
fi
[ $dry = 1 ] && exit 0
# The clock of the progress line: now, and the jobs done before it.
echo "$(date +%s) $finished" > "$out/.grid-start"

# What writes the tables when the jobs are over.  A sweep has none of its
# own: its table comes with the finals, which choose on the whole sweep.
case $mode in
paper | semisup-paper) tables="" ;;
paper-final) tables="protocol-table.sh $(dirname "$out")" ;;
semisup-paper-final) tables="semisup-table2.sh $(dirname "$out")" ;;
*) tables="aggregate.sh $out $mode" ;;
esac

if [ $slurm = 1 ]; then
    command -v sbatch > /dev/null 2>&1 || { echo "reproduce.sh: --slurm: sbatch not found" >&2; exit 1; }
    # With --only the selected tasks alone (the command line's --array
    # overrides the script's).
    array=$(sbatch --parsable ${only:+--array=$(echo $lines | tr ' ' ,)} "$out/slurm.sh")
    array=${array%%;*}
    if [ -z "$tables" ]; then
        echo "reproduce.sh: submitted job array $array ($selected tasks); the tables come with ${mode}-final"
    else
        agg=$(sbatch --parsable --dependency=afterany:"$array" --job-name="gsvae-$mode-tables" \
            --output="$out/runs/slurm-aggregate.out" --wrap "sh scripts/$tables")
        echo "reproduce.sh: submitted job array $array ($selected tasks) and job ${agg%%;*} (the tables, after it)"
    fi
    echo "reproduce.sh: progress: sh scripts/run-job.sh $out --progress; logs: $out/runs/slurm-*.out"
    exit 0
fi

command -v parallel > /dev/null 2>&1 && parallel --version 2>/dev/null | grep -q 'GNU parallel' ||
    { echo "reproduce.sh: GNU parallel not found (sh scripts/install-deps.sh grid installs it)" >&2; exit 1; }
# The job log and the summaries agree: a job logged as done whose
# summary.json is gone (deleted to run it again) leaves the log, so that
# --resume-failed runs every job without a summary and only those.  The
# log's Seq is the job's place in what parallel was handed: its line number
# in the whole list, its place in the selection with --only.
# joblog-only numbers the jobs of one selection: another starts afresh.
if [ -n "$only" ] && ! printf '%s\n' "$lines" | cmp -s - "$out/joblog-only.lines" 2> /dev/null; then
    rm -f "$out/joblog-only"
    printf '%s\n' "$lines" > "$out/joblog-only.lines"
fi
if [ -f "$log" ]; then
    printf '%s\n' "$done_seqs" > "$log.done"
    awk -F'\t' 'NR == FNR { ok[$1] = 1; next } FNR == 1 || ($1 in ok) || $7 != 0' \
        "$log.done" "$log" > "$log.tmp"
    mv "$log.tmp" "$log"
    rm -f "$log.done"
fi
echo "reproduce.sh: running $jobs at a time${hosts:+ per host of $hosts} through GNU parallel (job log $log)"
start=$(date +%s)
failed=0
# A TERM to parallel reaches each job once, and the job gets ten minutes to
# save its checkpoint (a step, or an evaluation under way, ends first):
# parallel's own sequence (TERM, 200 ms, TERM, 100 ms, TERM, 50 ms, KILL)
# killed a trainer whose step or evaluation outlasts 350 ms before its
# checkpoint.
printf '%s\n' "$lines" | parallel --joblog "$log" --resume-failed -j "$jobs" \
    --termseq TERM,600000,KILL,25 \
    ${hosts:+--sshloginfile "$hosts" --workdir "$PWD"} \
    sh scripts/run-job.sh "$out" {} || failed=$?
end=$(date +%s)
# GNU parallel's exit status: 0 when every job succeeded, 1-100 the number
# that failed, 101 more than 100, anything else (255) a stop by a signal or
# an error of its own.
case $failed in
0) why="" ;;
[1-9] | [1-9][0-9] | 100) why="$failed job(s) failed" ;;
101) why="more than 100 jobs failed" ;;
*) why="GNU parallel stopped (exit $failed: a signal, or an error of its own)" ;;
esac
[ -n "$why" ] || echo "reproduce.sh: jobs finished in $((end - start)) s"
# DIR/wall_time.txt, for the tables, is the time of a whole grid run at once:
# written when this run started every job and all succeeded, removed when it
# ran a part (a grid run in pieces has no single wall time), left when it
# found them all done.  A subset's time is only printed.
if [ -z "$only" ]; then
    if [ -z "$why" ] && [ "$finished" -eq 0 ]; then
        echo "$mode $((end - start)) $(nproc)" > "$out/wall_time.txt"
    elif [ "$finished" -lt "$total" ]; then
        rm -f "$out/wall_time.txt"
    fi
fi
if [ -n "$tables" ]; then
    sh scripts/$tables
else
    echo "reproduce.sh: the sweep's runs are in $out; scripts/reproduce.sh ${mode}-final chooses on them, runs the finals and writes the tables"
fi
if [ -n "$why" ]; then
    echo "reproduce.sh: $why after $((end - start)) s (see $log and the runs' .out files); rerun the same command to retry or continue them" >&2
    exit 1
fi
