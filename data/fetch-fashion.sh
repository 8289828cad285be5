#!/bin/sh
# fetch-fashion.sh DIR: put Fashion-MNIST's four .gz IDX files into DIR.
#
# They come from the Debian package dataset-fashion-mnist: its installed files
# when it is installed, else the .deb fetched with `apt-get download` (needs
# no root) and unpacked with dpkg-deb -x.  Debian re-gzipped the files, so we
# verify the md5 of their uncompressed content (Zalando's, see shared/DATA.md).
#
# Idempotent: when the four files are there and verified it does nothing.  A
# file appears in DIR only complete and verified (temp name, then mv).
set -u

dir=${1:-data/fashion}
pkg=dataset-fashion-mnist
installed_dir=/usr/share/datasets/fashion-mnist

# name  md5-of-uncompressed-content
table() {
    cat <<'EOF'
train-images-idx3-ubyte f4a8712d7a061bf5bd6d2ca38dc4d50a
train-labels-idx1-ubyte 9018921c3c673c538a1fc5bad174d6f9
t10k-images-idx3-ubyte 8181f5470baa50b63fa0f6fddb340f0a
t10k-labels-idx1-ubyte 15d484375f8d13e6eb1aabb0c3f46965
EOF
}

die() {
    echo "fetch-fashion: $*" >&2
    exit 1
}

for tool in md5sum gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; it is needed to fetch and verify Fashion-MNIST"
done

# md5 of the uncompressed content of a .gz file; empty when it does not
# decompress (gzip -t first, since a pipeline's status is md5sum's).
gz_content_md5() {
    [ -f "$1" ] && gzip -t "$1" 2>/dev/null || return 0
    gzip -dc "$1" | md5sum | cut -d' ' -f1
}

# True when SRCDIR holds the four .gz files with the right content; else
# says which one is wrong in $why.
verified() {
    why=$(table | while read -r name md5; do
        if [ ! -f "$1/$name.gz" ]; then
            echo "$1/$name.gz missing"; break
        fi
        got=$(gz_content_md5 "$1/$name.gz")
        if [ -z "$got" ]; then
            echo "$1/$name.gz: corrupt gzip stream"; break
        fi
        if [ "$got" != "$md5" ]; then
            echo "$1/$name.gz: md5 mismatch of the uncompressed content: got $got, expected $md5"; break
        fi
    done)
    [ -z "$why" ]
}

if verified "$dir"; then
    echo "$dir: Fashion-MNIST already present and verified"
    exit 0
fi

mkdir -p "$dir" || die "$dir: cannot create directory"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gsvae-fashion.XXXXXX") || die "cannot create a temporary directory"
trap 'rm -rf "$tmp"; rm -f "$dir"/.*.tmp.$$' EXIT
trap 'exit 130' INT TERM HUP

if [ -d "$installed_dir" ] && verified "$installed_dir"; then
    src=$installed_dir
else
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        die "apt-get and dpkg-deb are needed to fetch the Debian package $pkg"
    fi
    # apt-get download writes into the current directory; as root it may
    # warn that it runs unsandboxed, which is harmless here.
    if ! (cd "$tmp" && apt-get download -q "$pkg" >apt.out 2>apt.err); then
        # Stale or missing package lists are the usual cause; refresh them
        # once when we may.
        if [ "$(id -u)" -eq 0 ] && apt-get update -q >/dev/null 2>&1 &&
            (cd "$tmp" && apt-get download -q "$pkg" >apt.out 2>apt.err); then
            :
        else
            reason=$(grep -m 1 -E '^(E|W):' "$tmp/apt.err" | grep -v unsandboxed)
            die "apt-get download $pkg failed (network, or package lists need 'apt-get update' as root): ${reason:-see apt-get output}"
        fi
    fi
    deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" | head -n 1)
    [ -n "$deb" ] || die "apt-get download $pkg produced no .deb"
    mkdir -p "$tmp/x" || die "cannot create $tmp/x"
    dpkg-deb -x "$deb" "$tmp/x" || die "$deb: cannot unpack"
    src="$tmp/x$installed_dir"
    verified "$src" || die "$pkg: $why"
fi

table | while read -r name md5; do
    gz_content_md5 "$dir/$name.gz" | grep -qx "$md5" && continue
    part="$dir/.$name.gz.tmp.$$"
    cp "$src/$name.gz" "$part" || die "$dir/$name.gz: cannot write"
    [ "$(gz_content_md5 "$part")" = "$md5" ] || die "$dir/$name.gz: md5 mismatch after copying"
    mv -f "$part" "$dir/$name.gz" || die "$dir/$name.gz: cannot rename into place"
done || exit 1

verified "$dir" || die "$why"
echo "$dir: Fashion-MNIST fetched and verified (4 .gz IDX files from $pkg)"
