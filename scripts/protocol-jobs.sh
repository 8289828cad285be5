#!/bin/sh
# protocol-jobs.sh sweep|final OUTDIR [CHOSEN]: the job list (one `gsvae
# train` command a line, the last argument --out DIR) of the paper's Table 1
# protocol (../shared/PAPER.md, results/protocol/README.md):
#
#   sweep  every row x estimator x learning rate of the paper's grid
#          {3e-5, 1e-5, 3e-4, 1e-4, 3e-3, 1e-3}, and for the VAE's
#          temperature estimators (gumbel, st-gumbel) and annealed-ST in
#          every row the annealing grid N in {500, 1000} x r in {1e-5, 1e-4}
#          (protocol-lib.sh); seed 1,
#          scored on the validation set (the last 10,000 training images;
#          a VAE run computes protocol-select.sh's bound itself as it ends,
#          --valid-iw-samples, so the choice needs no checkpoint).
#          Row by row (SBN Bernoulli, SBN categorical, VAE Bernoulli, VAE
#          categorical), so that a sweep run in order completes whole rows,
#          whose finals can start while the next row's sweep runs.
#   final  the setting CHOSEN (protocol-select.sh's file) of every cell over
#          seeds 1-3, scored on the test set (VAE: the m = 1000 importance
#          weighted bound with hard samples; SBN: -log p(x_lower|x_upper)
#          with 1000 samples).  Only the cells whose choice was made on
#          the whole grid (n_settings 6, or 24 with the annealing grid);
#          PROTOCOL_PARTIAL=1 takes a partial sweep's choice too.
#          Seed 1 of every cell first, then seed 2, then seed 3.
#
# Every run: SGD with momentum 0.9 on the batch's summed loss (--batch-loss
# sum: the paper's rates read as rates on the sum over the batch, which
# makes each 100 times our rate on the mean; results/protocol/README.md
# gives the runs that chose this reading), batch 100, fixed binarization of
# every image (the same in every run), --validation 10000.  The VAE is the
# paper's linear one (--hidden none) with a learned prior, or with
# PROTOCOL_READING=deep the same with hidden layers (protocol-lib.sh).  Budgets
# (not stated in the paper; results/protocol/README.md says why):
# PROTOCOL_SWEEP_STEPS, and the finals' per row (protocol-lib.sh's
# final_steps).  GSVAE_BIN, GSVAE_DATA as
# for reproduce.sh.  A budget raised after runs finished continues them
# from their checkpoints (scripts/run-job.sh).
set -eu
mode=${1:-}
out=${2:-}
[ -n "$out" ] && { [ "$mode" = sweep ] || [ "$mode" = final ]; } ||
    { echo "usage: scripts/protocol-jobs.sh sweep|final OUTDIR [CHOSEN]" >&2; exit 2; }
bin=${GSVAE_BIN:-./gsvae}
data=${GSVAE_DATA:-data/mnist}
sweep_steps=${PROTOCOL_SWEEP_STEPS:-20000}
# Outward from the rate that did best in the budget runs (3e-4 on the sum;
# results/protocol/README.md), so that a row stopped part-way has tried
# each of its cells at the likeliest rates first.
lrs="3e-4 1e-3 1e-4 3e-3 3e-5 1e-5"
common="--optimizer momentum --momentum 0.9 --batch-loss sum --batch 100 --binarize fixed --validation 10000 --quiet --threads 1"

# row_flags ROW: the task and the model of a row.
row_flags() {
    case $1 in
    sbn-*) echo "--task sbn --latent-type ${1#sbn-}" ;;
    vae-*) echo "--task vae --latent-type ${1#vae-} --hidden $vae_hidden --prior learned" ;;
    esac
}

. "$(dirname "$0")/protocol-lib.sh"

if [ "$mode" = sweep ]; then
    for row in $protocol_rows; do
        for lr in $lrs; do
            for est in $(row_estimators $row); do
                base="$bin train $(row_flags $row) --data $data $(estimator_flags $est) --lr $lr $common --seed 1"
                case $row in
                sbn-*) budget="--steps $sweep_steps --eval-every 5000 --eval-samples 20 --eval-images 1000 --test-samples 0" ;;
                vae-*) budget="--steps $sweep_steps --eval-every 5000 --eval-images 1000 --iw-samples 0 --valid-iw-samples ${PROTOCOL_SELECT_IW:-100}" ;;
                esac
                if uses_anneal $row $est; then
                    for N in 500 1000; do
                        for r in 1e-5 1e-4; do
                            echo "$base --anneal-every $N --anneal-rate $r $budget --out $out/runs/$row-$est-lr$lr-N$N-r$r"
                        done
                    done
                else
                    echo "$base $budget --out $out/runs/$row-$est-lr$lr"
                fi
            done
        done
    done
    exit 0
fi

chosen=${3:-}
[ -f "$chosen" ] || { echo "protocol-jobs.sh final: $chosen: no chosen settings (run scripts/protocol-select.sh)" >&2; exit 2; }
# chosen: row,estimator,lr,anneal_N,anneal_r,valid,n_settings,run
partial=${PROTOCOL_PARTIAL:-0}
# Seed by seed, so that a final stopped part-way has every cell once before
# any cell twice.  The notes on partial choices are printed once.
for seed in 1 2 3; do
    tail -n +2 "$chosen" | while IFS=, read -r row est lr N r valid n run; do
        grid=$(grid_size $row $est)
        if [ "$n" -lt $grid ] && [ "$partial" != 1 ]; then
            [ $seed = 1 ] && echo "protocol-jobs.sh: $row $est: chosen among $n of the $grid settings, no final yet (PROTOCOL_PARTIAL=1 runs it)" >&2
            continue
        fi
        anneal=""
        [ "$N" != "-" ] && anneal="--anneal-every $N --anneal-rate $r"
        case $row in
        sbn-*) budget="--steps $(final_steps $row) --eval-every 5000 --eval-samples 20 --test-samples 1000" ;;
        vae-*) budget="--steps $(final_steps $row) --eval-every 5000 --iw-samples 1000" ;;
        esac
        echo "$bin train $(row_flags $row) --data $data $(estimator_flags $est) --lr $lr $anneal $common --seed $seed $budget --out $out/runs/$row-$est-s$seed"
    done
done
