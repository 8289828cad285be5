#!/bin/sh
# bench.sh BIN DATA: time gsvae and the PyTorch peer (../shared/bench) in
# one run on this machine and print the ratio.  The peer uses random binary
# images of MNIST size and density; both train the same architecture with
# the same batch.
set -u
bin=$1; data=$2
steps=${BENCH_STEPS:-500}
peer=${BENCH_PEER:-../shared/bench/torch_vae.py}
py=/usr/bin/python3
nproc=$(nproc)

echo "== gsvae (threads 1..$nproc)"
best=0; best_t=0
for t in $(seq 1 "$nproc"); do
    out=$("$bin" bench --data "$data" --steps "$steps" --threads "$t") || exit 1
    echo "$out" | sed 's/^/  /'
    eps=$(echo "$out" | sed -n 's/^train: \([0-9]*\) examples.*/\1/p')
    if [ "$eps" -gt "$best" ]; then best=$eps; best_t=$t; fi
done

echo "== PyTorch peer ($peer)"
tbest=0
if [ -f "$peer" ] && $py -c 'import torch' 2>/dev/null; then
    for setting in "OPENBLAS_NUM_THREADS=$nproc --threads 1" "OPENBLAS_NUM_THREADS=1 --threads $nproc" "OPENBLAS_NUM_THREADS=1 --threads 1"; do
        envs=${setting%% --*}; flags=--${setting#* --}
        out=$(env "$envs" $py "$peer" --steps 300 $flags 2>&1 | tail -1)
        echo "  [$envs $flags] $out"
        eps=$(echo "$out" | sed -n 's/.* \([0-9]*\) examples\/s.*/\1/p')
        [ -n "$eps" ] && [ "$eps" -gt "$tbest" ] && tbest=$eps
    done
else
    echo "  skipped: $peer or python3-torch missing (scripts/install-deps.sh installs python3-torch)"
fi

echo "== summary"
echo "gsvae best: $best examples/s (threads $best_t)"
if [ "$tbest" -gt 0 ]; then
    echo "torch best: $tbest examples/s"
    awk -v a="$best" -v b="$tbest" 'BEGIN { printf "ratio gsvae/torch: %.2fx\n", a / b }'
fi
