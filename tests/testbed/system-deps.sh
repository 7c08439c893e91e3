#!/usr/bin/env bash
# Debian packages the test bed needs on this machine: Docker for the lab
# hosts, debootstrap for their image, libseccomp for runc, dpkg-dev tools,
# and ShellCheck for ansible-test sanity.
# Installs only what is missing.
set -euo pipefail
need=()
for pkg in docker.io debootstrap libseccomp-dev pkg-config openssl gcc curl shellcheck; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} from apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${need[@]}" >/dev/null
fi
