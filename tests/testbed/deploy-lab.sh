#!/usr/bin/env bash
# Deploy the cluster onto the README's lab hosts with playbooks/site.yml,
# then show the nodes. Called by `make lab` after `lab.py up`.
set -euo pipefail
workers=${1:-2}
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${HARDWAY_CACHE:-$HOME/.cache/hardway}
inventory=$repo/inventories/lab/hosts.yml
if [ "$workers" != 2 ]; then
  mkdir -p "$cache/lab"
  inventory=$cache/lab/hosts-$workers.yml
  python3 "$repo/tests/testbed/lab.py" inventory --workers "$workers" > "$inventory"
  cp -r "$repo/inventories/lab/group_vars" "$cache/lab/"
fi
cd "$repo"
ansible-playbook -i "$inventory" playbooks/site.yml
kubectl=$(python3 -c 'import sys; sys.path.insert(0, "tests/testbed"); import mirror; print(mirror.k8s_binary("kubectl"))')
state=${HARDWAY_LAB_STATE:-$cache/lab/state}
echo
echo "The lab cluster is up. Its nodes:"
"$kubectl" --kubeconfig "$state/admin.kubeconfig" get nodes -o wide
echo
echo "Reach it with:"
echo "  $kubectl --kubeconfig $state/admin.kubeconfig get nodes"
