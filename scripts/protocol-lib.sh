# protocol-lib.sh: the rules of the Table 1 protocol that protocol-jobs.sh,
# protocol-select.sh and protocol-table.sh share (sourced, not run).

# uses_anneal ROW EST: whether the cell's sweep covers the annealing grid
# N in {500, 1000} x r in {1e-5, 1e-4} beside the learning rates: the VAE's
# temperature estimators (the paper: "N in {500, 1000}, r in {1e-5, 1e-4},
# chosen on validation"), and annealed-ST's slope schedule in every row (the
# paper states none; results/protocol/causes/README.md measured 2.1 nats
# between two of these schedules on the categorical SBN).  The SBN's
# Gumbel-Softmax keeps tau = 1, as the paper says.
uses_anneal() {
    case $1-$2 in
    vae-*-gumbel | vae-*-st-gumbel | *-annealed-st) return 0 ;;
    esac
    return 1
}

# grid_size ROW EST: the settings of the cell's whole sweep.
grid_size() {
    if uses_anneal "$1" "$2"; then echo 24; else echo 6; fi
}
