#!/usr/bin/env bash
# Make this checkout importable and runnable as the collection hardway.kubernetes:
# a link at $2/ansible_collections/hardway/kubernetes pointing at the repo root.
# ansible.posix, community.docker and community.crypto come from the `ansible`
# package in the virtualenv (Galaxy is not reachable from here).
set -euo pipefail
# $1 is the virtualenv (the Makefile passes it; nothing here needs it).
collections=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$collections/ansible_collections/hardway"
link="$collections/ansible_collections/hardway/kubernetes"
if [ "$(readlink "$link" 2>/dev/null)" != "$repo" ]; then
  rm -rf "$link"
  ln -s "$repo" "$link"
fi
