#!/bin/sh
# run-job.sh DIR N: run line N of DIR/jobs.txt, the job that GNU parallel
# (scripts/reproduce.sh) or a Slurm array task (DIR/slurm.sh) hands out, from
# the repository root.  A finished job is skipped, so a rerun, a restarted
# array or a second host never repeats finished work; a job that left a
# checkpoint is resumed.  Finished: its summary.json exists, does not say
# "interrupted": true, and holds the steps the line asks for (--steps), so a
# budget raised in the job list after a job finished continues that job
# from its checkpoint instead of starting it again.
# A run whose summary.json records other settings than its line asks for
# (the flags of the line against summary.json's "flags", all but --out,
# --steps, --data, --threads, --quiet, --resume, --eval-every and
# --valid-iw-samples, which change where the run is looked at, not what it
# trains; numbers equal to 1e-6
# relative; a flag the summary does not record, as older versions' lack
# some, is taken to agree) is stale: a choice that moved after its finals ran, say.  It is
# neither skipped nor continued: its directory and .out file are moved
# aside to .stale/RUN-TIME beside it (nothing is deleted; hidden, so that
# the tables' globs over RUN-s* never count it) and the job runs afresh.
# So does an unfinished run that left no checkpoint (stopped before its
# first, or copied without it), moved aside the same way.
# The job's output goes to its directory's .out file beside it.  Exit status:
# the job's (0 when skipped).  Then one progress line for the whole grid.
#
# run-job.sh DIR --progress: that line alone.
# run-job.sh DIR --done: the line numbers of the finished jobs, one a line
# (reproduce.sh's count and its job-log check use it).
#
# The progress line: jobs done / total (those with a summary.json), the time
# since the grid was started (DIR/.grid-start, written by reproduce.sh:
# "EPOCH DONE_THEN"), and an estimate of the time left from the rate of the
# jobs finished since then.  With several hosts it counts what the shared
# file system shows.
set -u
cd "$(dirname "$0")/.." || exit 1
. scripts/plot/lib.sh  # plot_json, plot_finished
[ $# -eq 2 ] || { echo "usage: scripts/run-job.sh DIR N | DIR --progress" >&2; exit 2; }
dir=$1
jobs=$dir/jobs.txt
[ -f "$jobs" ] || { echo "run-job.sh: $jobs: missing (scripts/reproduce.sh writes it)" >&2; exit 2; }

hms() {
    awk -v s="$1" 'BEGIN { printf "%d:%02d:%02d", s / 3600, (s % 3600) / 60, s % 60 }'
}

# stale_flag LINE SUMMARY: the first flag of the line whose value the
# summary's "flags" records otherwise, as "--flag: line V, run W";
# nothing, and status 1, when every recorded flag agrees.
stale_flag() {
    flags=$(grep '"flags":' "$2" | head -n 1)
    printf '%s\n' "$1" | awk -v flags="$flags" '
    function num(v) { return v ~ /^-?[0-9.]+([eE][-+]?[0-9]+)?$/ }
    {
        # A flag given twice takes its last value, as gsvae does.
        n = 0
        for (i = 1; i <= NF; i++) {
            if ($i !~ /^--/) continue
            name = substr($i, 3)
            if (!(name in val)) order[++n] = name
            val[name] = (i < NF && $(i + 1) !~ /^--/) ? $(i + 1) : "1"
        }
        for (k = 1; k <= n; k++) {
            name = order[k]
            if (name ~ /^(out|steps|data|threads|quiet|resume|eval-every|valid-iw-samples)$/) continue
            key = name; gsub(/-/, "_", key)
            pat = "\"" key "\": "
            at = index(flags, pat)
            if (at == 0) continue
            got = substr(flags, at + length(pat))
            if (got ~ /^"/) { got = substr(got, 2); sub(/".*/, "", got) }
            else sub(/[,}].*/, "", got)
            if (got == "true") got = 1; else if (got == "false") got = 0
            v = val[name]
            if (num(v) && num(got)) {
                a = v + 0; b = got + 0; d = a - b; if (d < 0) d = -d
                m = a < 0 ? -a : a; if ((b < 0 ? -b : b) > m) m = b < 0 ? -b : b
                if (d <= 1e-6 * m) continue
            } else if (v == got) continue
            printf "--%s: line %s, run %s\n", name, v, got
            exit 0
        }
        exit 1
    }'
}

# job_done LINE: whether the job of that job-list line is finished.
job_done() {
    s=${1##*--out }/summary.json
    plot_finished "$s" || return 1
    stale_flag "$1" "$s" > /dev/null && return 1
    want=$(printf '%s\n' "$1" | sed -n 's/.* --steps \([0-9][0-9]*\).*/\1/p')
    [ -z "$want" ] && return 0
    got=$(plot_json "$s" steps_done)
    [ -n "$got" ] && [ "$got" -ge "$want" ]
}

# The line numbers of the finished jobs.
done_lines() {
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        job_done "$line" && echo $n
    done < "$jobs"
    return 0
}

progress() {
    total=$(grep -c . "$jobs")
    done=$(done_lines | wc -l)
    now=$(date +%s)
    start=$now done0=$done
    [ -f "$dir/.grid-start" ] && read -r start done0 < "$dir/.grid-start"
    elapsed=$((now - start))
    ran=$((done - done0))
    if [ "$done" -ge "$total" ]; then
        left="none left"
    elif [ "$ran" -gt 0 ]; then
        left="about $(hms $((elapsed * (total - done) / ran))) left"
    else
        left="no estimate yet"
    fi
    echo "grid $dir: $done/$total jobs done, $(hms "$elapsed") elapsed, $left"
}

if [ "$2" = --progress ]; then
    progress
    exit 0
fi
if [ "$2" = --done ]; then
    done_lines
    exit 0
fi
n=$2
case $n in
'' | *[!0-9]*) echo "run-job.sh: job '$n': expected a line number of $jobs" >&2; exit 2 ;;
esac
cmd=$(sed -n "${n}p" "$jobs")
[ -n "$cmd" ] || { echo "run-job.sh: $jobs has no line $n" >&2; exit 2; }
out=${cmd##*--out }
case $out in
*' '* | '') echo "run-job.sh: line $n of $jobs does not end with --out DIR" >&2; exit 2 ;;
esac
# move_aside WHY: the run's directory and .out file to .stale/RUN-TIME
# beside it, saying WHY and where; nothing is deleted.
move_aside() {
    aside=$(dirname "$out")/.stale/$(basename "$out")-$(date -u +%Y%m%dT%H%M%S)
    i=1 base=$aside
    while [ -e "$aside" ] || [ -e "$aside.out" ]; do # twice in one second
        i=$((i + 1)) aside=$base-$i
    done
    echo "$1; moved to $aside" >&2
    mkdir -p "$(dirname "$aside")" && mv "$out" "$aside" &&
        { [ ! -f "$out.out" ] || mv "$out.out" "$aside.out"; } || exit 1
}
rc=0
if job_done "$cmd"; then
    echo "skip (done): $out"
else
    if [ -f "$out/summary.json" ] && why=$(stale_flag "$cmd" "$out/summary.json"); then
        move_aside "stale: $out ran other settings ($why)"
    elif [ ! -f "$out/model.ckpt" ] && { [ -f "$out/log.csv" ] || [ -f "$out/summary.json" ]; }; then
        # Stopped before its first checkpoint, or its checkpoint was lost
        # (a copy of the tree without ignored files): nothing to continue
        # from, and gsvae refuses to write over the run.
        move_aside "lost: $out holds an unfinished run without a checkpoint to continue from"
    fi
    mkdir -p "$out"
    # A job stopped part-way (a signal, a kill, a lost node), or finished
    # under a smaller budget, left its checkpoint: continue it rather than
    # start again.
    [ -f "$out/model.ckpt" ] && cmd="$cmd --resume"
    if sh -c "$cmd" >> "$out.out" 2>&1; then
        echo "done: $out"
    else
        rc=$?
        echo "FAILED (exit $rc): $cmd (see $out.out)" >&2
    fi
fi
progress >&2
exit $rc
