#!/bin/sh
# bench-scaling.sh BIN DATA: how the cost of a training step grows with the
# batch size and with the latent size; prints Markdown tables.
set -eu
bin=$1; data=$2
steps=${BENCH_STEPS:-200}
threads=${BENCH_THREADS:-0}
row() {
    out=$("$bin" bench --data "$data" --steps "$steps" --threads "$threads" --iw-images 1 --iw-samples 1 "$@")
    ms=$(echo "$out" | sed -n 's/.* \([0-9.]*\) ms\/step.*/\1/p' | head -n 1)
    eps=$(echo "$out" | sed -n 's/^train: \([0-9]*\) examples.*/\1/p')
    mf=$(echo "$out" | sed -n 's/^matmul: \([0-9.]*\) MFLOP.*/\1/p')
    gf=$(echo "$out" | sed -n 's/.*achieved \([0-9.]*\) GFLOP.*/\1/p')
    pct=$(echo "$out" | sed -n 's/.*step at \([0-9]*\)% of.*/\1/p')
    echo "$ms | $eps | $mf | $gf | $pct%"
}
echo "Batch size (20x10 categorical code, Gumbel-Softmax, threads $threads, $steps steps):"
echo
echo "| batch | ms/step | examples/s | MFLOP/step | GFLOP/s | of sgemm-bound |"
echo "|---|---|---|---|---|---|"
for b in 25 50 100 200 400; do
    echo "| $b | $(row --batch "$b") |"
done
echo
echo "Latent size (batch 100, N x 10 categorical):"
echo
echo "| latent | ms/step | examples/s | MFLOP/step | GFLOP/s | of sgemm-bound |"
echo "|---|---|---|---|---|---|"
for n in 10 20 50 100; do
    echo "| ${n}x10 | $(row --latent "${n}x10") |"
done
