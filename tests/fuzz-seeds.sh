#!/bin/sh
# fuzz-seeds.sh DIR: write a few small IDX files, valid and broken, plain and
# gzipped, as the starting corpus of the IDX fuzzer.  Real MNIST bytes are
# used when the data is there (GSVAE_DATA, else data/mnist); zeros otherwise.
# Seeds stay small (a few KB): libFuzzer's input length follows the largest
# seed, and short inputs mean many more executions per second.
set -eu

dir=${1:?usage: sh tests/fuzz-seeds.sh DIR}
data=${GSVAE_DATA:-data/mnist}
mkdir -p "$dir"

# be32 N: N as four big-endian bytes (printf octal escapes, POSIX).
be32() {
    # The format is built on purpose: it is the four octal escapes.
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' \
        $(( ($1 >> 24) & 255 )) $(( ($1 >> 16) & 255 )) $(( ($1 >> 8) & 255 )) $(( $1 & 255 )))"
}

# payload FILE SKIP COUNT: COUNT bytes of FILE after SKIP bytes, or zeros.
payload() {
    if [ -f "$1" ]; then
        dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null
    else
        dd if=/dev/zero bs=1 count="$3" 2>/dev/null
    fi
}

images="$data/train-images-idx3-ubyte"
labels="$data/train-labels-idx1-ubyte"

# Valid: the first 4 training images, the first 100 labels, a 2x3x3 image.
{ be32 2051; be32 4; be32 28; be32 28; payload "$images" 16 3136; } >"$dir/images4.idx"
{ be32 2049; be32 100; payload "$labels" 8 100; } >"$dir/labels100.idx"
{ be32 2051; be32 2; be32 3; be32 3; printf '\000\001\002\003\004\005\006\007\010\377\376\375\374\373\372\371\370\367'; } >"$dir/tiny.idx"
gzip -6 -n -c "$dir/images4.idx" >"$dir/images4.idx.gz"
gzip -6 -n -c "$dir/labels100.idx" >"$dir/labels100.idx.gz"

# Broken: each one a failure the reader must name.
{ be32 2052; be32 1; be32 1; be32 2; be32 2; printf '\000\000\000\000'; } >"$dir/bad-ndims.idx"
{ be32 3331; be32 1; be32 2; be32 2; printf '\000\000\000\000'; } >"$dir/bad-type.idx"
{ be32 2051; be32 0; be32 28; be32 28; } >"$dir/bad-zero.idx"
{ be32 2051; be32 10000000; be32 28; be32 28; printf '\000\000\000\000'; } >"$dir/bad-liar.idx"
{ be32 2049; be32 5; printf '\000\001\002'; } >"$dir/bad-short.idx"
{ be32 2049; be32 3; printf '\000\001\002\003\004'; } >"$dir/bad-trailing.idx"
{ be32 2049; be32 3; printf '\000\014\002'; } >"$dir/bad-label.idx"
gzip -6 -n -c "$dir/bad-liar.idx" >"$dir/bad-liar.idx.gz"
# A gzip stream cut short.
gzip -6 -n -c "$dir/labels100.idx" | dd bs=1 count=40 2>/dev/null >"$dir/bad-cut.idx.gz"
printf '\037\213' >"$dir/bad-gzmagic"
echo "fuzz-seeds: seeds written to $dir"
