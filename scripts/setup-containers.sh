#!/usr/bin/env bash
# Install what the `containers` tests need, from Debian's own packages (no container registry):
# dockerd (docker.io), docker-compose, podman with runc and catatonit (its `--init`), and nginx.
#
# Idempotent: packages already installed are left alone. Needs root (apt-get).
# Nothing is started: the tests run a private dockerd of their own and never touch a system daemon.
# While installing, a policy-rc.d that refuses every start keeps the packages' maintainer scripts
# from starting the system dockerd or an nginx on port 80 (one already in place is kept).
set -euo pipefail

PACKAGES=(docker.io docker-compose podman runc catatonit nginx-light)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "container tools ready: $(dockerd --version), $(podman --version), $(runc --version | head -1)"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "setup-containers.sh: installing ${missing[*]} needs root (apt-get)" >&2
    exit 1
fi

started=$(date +%s)
POLICY=/usr/sbin/policy-rc.d
if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "container tools ready after $(( $(date +%s) - started ))s: $(dockerd --version), $(podman --version)"
