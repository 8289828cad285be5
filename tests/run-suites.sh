#!/bin/sh
# Run every Check suite given; fail if any fails.  The suites read the
# program under test from GSVAE_BIN and the MNIST files from GSVAE_DATA.
set -u
bin=$1; data=$2; shift 2
GSVAE_BIN=$bin; GSVAE_DATA=$data
export GSVAE_BIN GSVAE_DATA
failed=""
for t in "$@"; do
    echo "== $t"
    if ! "$t"; then failed="$failed $t"; fi
done
if [ -n "$failed" ]; then
    echo "FAILED:$failed" >&2
    exit 1
fi
echo "all suites passed"
