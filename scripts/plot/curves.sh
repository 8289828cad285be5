#!/bin/sh
# curves.sh RUNS TASK OUT.png: test loss against training step per
# estimator, one panel per latent type (Bernoulli above, categorical
# below): the counterpart of the paper's Figure 3 (TASK sbn) or Figure 4
# (TASK vae), from RUNS/TASK-LATENT-ESTIMATOR-sSEED/{log.csv,summary.json}.
#
# Each line is the mean over the seeds found, from the first evaluation
# after step 0 (the untrained model, hundreds of nats above the rest);
# the legend gives each estimator's final test loss (the summaries' mean,
# the tables' figure) and the paper's value, which is also drawn as a
# dashed line in the estimator's colour.  SBN runs evaluate with fewer
# samples during training than at the end, so there the final figure is
# also marked at the last step (a diamond): it sits below the curve.  VAE
# runs that end with the importance-weighted bound (test_neg_log_px_iw,
# the paper's figure) give that bound in the legend and as the diamond,
# beside curves of the one-sample -ELBO; without it, the -ELBO's.
# PLOT_REFERENCES (set: used instead of the paper's table): the published
# figures to set beside the estimators, as words TASK-LATENT-ESTIMATOR=VALUE
# (none for a cell without one), named PLOT_REFERENCE_NAME (default
# "paper") in the legend.
# PLOT_TITLE (set and not empty: used instead of "Figure N (counterpart):
# WHAT"): the figure's title, for runs that are not the paper's estimators.
# PLOT_YMAX (set: the top of the loss axis): a line that runs above it
# leaves the panel there, its final figure still in the legend, so that one
# diverging estimator does not flatten the others (the note says so).
# PLOT_MIN_STEPS (default 0): only the runs whose summary.json records at
# least that many steps, so that no line mixes budgets (runs being
# continued to a raised one keep their shorter summary meanwhile).
set -eu
[ $# -eq 3 ] || { echo "usage: scripts/plot/curves.sh RUNS sbn|vae OUT.png" >&2; exit 2; }
runs=$1 task=$2 out=$3
PLOT_DIR=$(dirname "$0")
. "$PLOT_DIR/lib.sh"
case $task in
sbn) col=test_nll; fig=3
     what="structured output prediction with stochastic binary networks"
     ylabel="test −log p(x_{lower} | x_{upper}), nats" ;;
vae) col=test_neg_elbo; fig=4
     what="variational autoencoders on binarized MNIST"
     ylabel="test −ELBO (hard code), nats" ;;
*) echo "curves.sh: task '$task': expected sbn or vae" >&2; exit 2 ;;
esac
command -v gnuplot > /dev/null 2>&1 || { echo "curves.sh: gnuplot not found; $out not drawn" >&2; exit 1; }

tmp=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
gp=$tmp/plot.gp
seeds_max=0 seeds_min=0 iw=no
{
    echo "W = 1000; H = 1040"
    echo "load '$PLOT_DIR/style.gp'"
    echo "set output '$out.tmp'"
    echo "set lmargin at screen 0.085; set rmargin at screen 0.61"
    echo "set key outside right top vertical Left reverse samplen 2.2 spacing 1.25 font 'DejaVu Sans Mono,12'"
    echo "set xlabel 'training step'"
    echo "set ylabel '$ylabel'"
    echo "set xrange [0:*]"
    echo "set offsets 0, 0, graph 0.04, graph 0.04"
    [ -z "${PLOT_YMAX:-}" ] || echo "set yrange [*:$PLOT_YMAX]"
} > "$gp"

refname=${PLOT_REFERENCE_NAME:-paper}
panels=0
for lt in bernoulli categorical; do
    plots="" notes="" haspaper=no
    for e in $PLOT_CURVES; do
        # The finished runs (a summary.json): a run still going would draw
        # a line that stops short.
        set --
        sums=""
        for f in "$runs/$task-$lt-$e"-s*/summary.json; do
            [ -f "$f" ] || continue
            [ "$(plot_json "$f" steps_done)" -ge "${PLOT_MIN_STEPS:-0}" ] 2>/dev/null ||
                [ "${PLOT_MIN_STEPS:-0}" = 0 ] || continue
            set -- "$@" "${f%summary.json}log.csv"
            sums="$sums $f"
        done
        [ $# -gt 0 ] || continue
        dat=$tmp/$lt-$e.dat
        plot_seed_mean "$col" "$@" > "$dat"
        [ -s "$dat" ] || continue
        n=$#
        [ "$n" -gt "$seeds_max" ] && seeds_max=$n
        { [ "$seeds_min" = 0 ] || [ "$n" -lt "$seeds_min" ]; } && seeds_min=$n
        last=$(tail -n 1 "$dat" | cut -d' ' -f1)
        mark=no
        [ $task = sbn ] && mark=yes
        final=""
        if [ $task = vae ]; then
            final=$(plot_summary_mean test_neg_log_px_iw $sums)
            final=${final%% *}
            [ -n "$final" ] && mark=yes iw=yes
        fi
        if [ -z "$final" ]; then
            final=$(plot_summary_mean "$col" $sums)
            final=${final%% *}
        fi
        if [ -n "${PLOT_REFERENCES+set}" ]; then
            paper=""
            for ref in $PLOT_REFERENCES; do
                [ "${ref%%=*}" = "$task-$lt-$e" ] && paper=${ref#*=}
            done
        else
            paper=$(plot_paper "$task-$lt" "$e")
        fi
        [ -n "$final" ] || final=$(tail -n 1 "$dat" | cut -d' ' -f2)
        lt_expr="est_lt('$e')"
        # Without a published figure (the estimators after the paper) the
        # legend gives ours alone.
        if [ -n "$paper" ]; then
            haspaper=yes
            title="sprintf('%-18s%7.2f  (%s)', est_label('$e'), $final, '$paper')"
        else
            title="sprintf('%-18s%7.2f', est_label('$e'), $final)"
        fi
        plots="$plots${plots:+, }'$dat' using 1:2 with linespoints lt $lt_expr title $title"
        if [ -n "$paper" ]; then
            plots="$plots, $paper with lines lt $lt_expr lw 1.8 dt PAPER notitle"
        fi
        if [ $mark = yes ]; then
            echo "$last $final" > "$tmp/$lt-$e.final"
            plots="$plots, '$tmp/$lt-$e.final' using 1:2 with points lt $lt_expr pt 12 ps 2.2 lw 2 notitle"
        fi
    done
    [ -n "$plots" ] || continue
    panels=$((panels + 1))
    first=$(ls -d "$runs/$task-$lt"-*-s1 2>/dev/null | head -n 1)
    latent=""
    [ -n "$first" ] && [ -f "$first/summary.json" ] &&
        latent=$(sed -n 's/.*"latent": *"\([^"]*\)".*/\1/p' "$first/summary.json" | head -n 1)
    if [ $lt = bernoulli ]; then
        label="(a) Bernoulli latents${latent:+ ($latent units)}"
    else
        label="(b) categorical latents${latent:+ (${latent%x*} variables of ${latent#*x} classes)}"
    fi
    {
        echo "set title \"$label\" font ',14'"
        if [ $haspaper = yes ]; then
            echo "set key title 'final: ours  ($refname)' left"
            echo "plot $plots, NaN with lines lc rgb '#606060' lw 1.5 dt PAPER title '$refname (dashed)'"
        else
            echo "set key title 'final: ours' left"
            echo "plot $plots"
        fi
    } >> "$tmp/panel-$lt.gp"
done
[ $panels -gt 0 ] || { echo "curves.sh: no $task runs with a '$col' column under $runs" >&2; exit 1; }

seeds=$seeds_max
[ "$seeds_min" -lt "$seeds_max" ] && seeds="$seeds_min-$seeds_max"
word=seeds
[ "$seeds" = 1 ] && word=seed
note="{/*0.8 mean of $seeds $word per line; step 0 (the untrained model) is left out}"
if [ $task = sbn ]; then
    s1=$(ls -d "$runs/sbn-"*-s1/summary.json 2>/dev/null | head -n 1)
    s1=${s1%/summary.json}
    m_eval=$(plot_json "$s1/summary.json" eval_samples)
    m_test=$(plot_json "$s1/summary.json" test_samples)
    [ -n "$m_eval" ] && [ -n "$m_test" ] &&
        note="$note\\n{/*0.8 curves: M = $m_eval samples per test image; final figure (◇ and legend): M = $m_test}"
elif [ $iw = yes ]; then
    s1=$(ls -d "$runs/vae-"*-s1/summary.json 2>/dev/null | head -n 1)
    m_test=$(plot_json "$s1" iw_samples)
    note="$note\\n{/*0.8 curves: -ELBO with one hard sample; final figure (◇ and legend): the importance-weighted bound, ${m_test:-1000} hard samples}"
    # The axis holds two figures then: the curves' and the diamonds'.
    ylabel="test −ELBO (lines), −log p(x) (◇), nats"
fi
[ -z "${PLOT_YMAX:-}" ] ||
    note="$note\\n{/*0.8 the axis stops at $PLOT_YMAX nats: a line above it leaves the panel, its final figure stays in the legend}"
{
    echo "set ylabel '$ylabel'"
    printf 'set multiplot layout %d,1 title "%s\\n%s" font ",15"\n' \
        "$panels" "${PLOT_TITLE:-Figure $fig (counterpart): $what}" "$note"
    cat "$tmp"/panel-*.gp
    echo "unset multiplot"
} >> "$gp"
gnuplot "$gp"
mv "$out.tmp" "$out"
