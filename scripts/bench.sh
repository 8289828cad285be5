#!/bin/sh
# bench.sh BIN DATA: time gsvae and the PyTorch peer (../shared/bench) in
# one run on this machine and print the ratio, for the notebook's deep model
# and the paper's two linear models (784-200-784 Bernoulli, 784-(20x10)-784
# categorical).  The peer uses random binary images of MNIST size and
# density; both train the same architecture (uniform prior) with the same
# batch.  For each model: examples/s of each side in each thread setting
# (the median of BENCH_ROUNDS interleaved rounds, bench_model below), the
# best of each and their ratio, the FLOPs a gsvae step performs, its
# share of the sgemm-bound limit, and the importance-sampled bound's
# throughput (samples/s).
set -u
bin=$1; data=$2
steps=${BENCH_STEPS:-500}
peer_steps=${BENCH_PEER_STEPS:-300}
rounds=${BENCH_ROUNDS:-3}
peer=${BENCH_PEER:-../shared/bench/torch_vae.py}
py=/usr/bin/python3
nproc=$(nproc)
have_peer=0
if [ -f "$peer" ] && $py -c 'import torch' 2>/dev/null; then have_peer=1; fi
summary=""

# median V...: the middle value (the lower of the two middle ones).
median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# bench_model NAME "GSVAE FLAGS" "PEER FLAGS": BENCH_ROUNDS rounds (default
# 3), each of them every gsvae thread setting and then every peer setting,
# so that a drift of the machine's speed falls on both sides alike; each
# setting's figure is the median of its rounds, each side's the best of its
# settings.  The runs' own lines are printed as they come.
bench_model() {
    name=$1; gflags=$2; pflags=$3
    peer_settings="OPENBLAS_NUM_THREADS=$nproc--threads=1 OPENBLAS_NUM_THREADS=1--threads=$nproc OPENBLAS_NUM_THREADS=1--threads=1"
    core=""
    for round in $(seq 1 "$rounds"); do
        echo "== $name, round $round of $rounds: gsvae (threads 1..$nproc) [gsvae bench $gflags]"
        for t in $(seq 1 "$nproc"); do
            # shellcheck disable=SC2086
            out=$("$bin" bench --data "$data" --steps "$steps" --threads "$t" $gflags) || exit 1
            echo "$out" | sed 's/^/  /'
            eps=$(echo "$out" | sed -n 's/^train: \([0-9]*\) examples.*/\1/p')
            eval "g_$t=\"\${g_$t:-} $eps\""
            eval "out_$t=\$out"
        done
        # The peer's torch does its products in the same OpenBLAS: it gets
        # the kernels gsvae ran with (OPENBLAS_CORETYPE), so that the ratio
        # compares the programs and not the kernels (main.c: gsvae names
        # the CPU's own kernels where the library fell back to its SSE3 ones).
        core=$(echo "$out" | sed -n 's/^blas: \([A-Za-z0-9]*\) kernels.*/\1/p')
        echo "== $name, round $round of $rounds: PyTorch peer ($peer $pflags; OPENBLAS_CORETYPE=$core)"
        if [ "$have_peer" = 1 ]; then
            i=0
            for setting in $peer_settings; do
                i=$((i + 1))
                envs=${setting%%--*}; flags="--threads ${setting##*=}"
                # shellcheck disable=SC2086
                out=$(env "$envs" ${core:+OPENBLAS_CORETYPE=$core} $py "$peer" --steps "$peer_steps" $pflags $flags 2>&1 | tail -1)
                echo "  [$envs $flags] $out"
                eps=$(echo "$out" | sed -n 's/.* \([0-9]*\) examples\/s.*/\1/p')
                eval "p_$i=\"\${p_$i:-} ${eps:-0}\""
            done
        else
            echo "  skipped: $peer or python3-torch missing (scripts/install-deps.sh installs python3-torch)"
        fi
    done
    best=0; best_t=0; best_out=""
    for t in $(seq 1 "$nproc"); do
        eval "m=\$(median \$g_$t)"
        echo "  gsvae threads $t: median $m examples/s (rounds:$(eval "echo \" \$g_$t\""))"
        if [ "$m" -gt "$best" ]; then best=$m; best_t=$t; eval "best_out=\$out_$t"; fi
        unset "g_$t"
    done
    tbest=0
    if [ "$have_peer" = 1 ]; then
        i=0
        for setting in $peer_settings; do
            i=$((i + 1))
            eval "m=\$(median \$p_$i)"
            echo "  peer ${setting%%--*} --threads ${setting##*=}: median $m examples/s (rounds:$(eval "echo \" \$p_$i\""))"
            [ "$m" -gt "$tbest" ] && tbest=$m
            unset "p_$i"
        done
    fi
    mf=$(echo "$best_out" | sed -n 's/^matmul: \([0-9.]*\) MFLOP.*/\1/p')
    pct=$(echo "$best_out" | sed -n 's/.*step at \([0-9]*\)% of.*/\1/p')
    sps=$(echo "$best_out" | sed -n 's/^eval: importance sampling.*(\([0-9]*\) samples\/s.*/\1/p')
    ratio=$(awk -v a="$best" -v b="$tbest" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }')
    torch_col=$([ "$tbest" -gt 0 ] && echo "$tbest" || echo "not run")
    summary="$summary| $name | $best (threads $best_t) | $torch_col | $ratio | $mf | $pct% | $sps |
"
}

bench_model "deep 784-512-256-(20x10)" "" ""
bench_model "linear 784-200-784 Bernoulli" "--hidden none --latent-type bernoulli" \
    "--hidden none --latent-type bernoulli"
bench_model "linear 784-(20x10)-784" "--hidden none" "--hidden none"

echo "== summary"
echo "| model | gsvae examples/s | torch best examples/s | ratio | MFLOP/step performed | of sgemm-bound | bound samples/s |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$summary"
