#!/bin/sh
# bench.sh BIN DATA: time gsvae and the PyTorch peer (../shared/bench) in
# one run on this machine and print the ratio, for the notebook's deep model
# and the paper's two linear models (784-200-784 Bernoulli, 784-(20x10)-784
# categorical).  The peer uses random binary images of MNIST size and
# density; both train the same architecture (uniform prior) with the same
# batch.  For each model: examples/s of each side in each thread setting,
# the best of each and their ratio, the FLOPs a gsvae step performs, its
# share of the sgemm-bound limit, and the importance-sampled bound's
# throughput (samples/s).
set -u
bin=$1; data=$2
steps=${BENCH_STEPS:-500}
peer_steps=${BENCH_PEER_STEPS:-300}
peer=${BENCH_PEER:-../shared/bench/torch_vae.py}
py=/usr/bin/python3
nproc=$(nproc)
have_peer=0
if [ -f "$peer" ] && $py -c 'import torch' 2>/dev/null; then have_peer=1; fi
summary=""

# bench_model NAME "GSVAE FLAGS" "PEER FLAGS"
bench_model() {
    name=$1; gflags=$2; pflags=$3
    echo "== $name: gsvae (threads 1..$nproc) [gsvae bench $gflags]"
    best=0; best_t=0; best_out=""
    for t in $(seq 1 "$nproc"); do
        # shellcheck disable=SC2086
        out=$("$bin" bench --data "$data" --steps "$steps" --threads "$t" $gflags) || exit 1
        echo "$out" | sed 's/^/  /'
        eps=$(echo "$out" | sed -n 's/^train: \([0-9]*\) examples.*/\1/p')
        if [ "$eps" -gt "$best" ]; then best=$eps; best_t=$t; best_out=$out; fi
    done
    # The peer's torch does its products in the same OpenBLAS: it gets the
    # kernels gsvae ran with (OPENBLAS_CORETYPE), so that the ratio compares
    # the programs and not the kernels (main.c: gsvae names the CPU's own
    # kernels where the library fell back to its SSE3 ones).
    core=$(echo "$best_out" | sed -n 's/^blas: \([A-Za-z0-9]*\) kernels.*/\1/p')
    echo "== $name: PyTorch peer ($peer $pflags; OPENBLAS_CORETYPE=$core)"
    tbest=0
    if [ "$have_peer" = 1 ]; then
        for setting in "OPENBLAS_NUM_THREADS=$nproc --threads 1" "OPENBLAS_NUM_THREADS=1 --threads $nproc" "OPENBLAS_NUM_THREADS=1 --threads 1"; do
            envs=${setting%% --*}; flags=--${setting#* --}
            # shellcheck disable=SC2086
            out=$(env "$envs" ${core:+OPENBLAS_CORETYPE=$core} $py "$peer" --steps "$peer_steps" $pflags $flags 2>&1 | tail -1)
            echo "  [$envs $flags] $out"
            eps=$(echo "$out" | sed -n 's/.* \([0-9]*\) examples\/s.*/\1/p')
            [ -n "$eps" ] && [ "$eps" -gt "$tbest" ] && tbest=$eps
        done
    else
        echo "  skipped: $peer or python3-torch missing (scripts/install-deps.sh installs python3-torch)"
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
