#!/usr/bin/env bash
# Deploy the cluster onto the README's lab hosts with playbooks/site.yml,
# then show the nodes. Called by `make lab` after `lab.py up`.
# Arguments: number of workers (2), number of control planes (1, or 3 for HA).
set -euo pipefail
workers=${1:-2}
control_planes=${2:-1}
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${HARDWAY_CACHE:-$HOME/.cache/hardway}
case "$control_planes/$workers" in
  1/2) inventory=$repo/inventories/lab/hosts.yml ;;
  3/2) inventory=$repo/inventories/lab/ha.yml ;;
  *)
    mkdir -p "$cache/lab"
    inventory=$cache/lab/hosts-$control_planes-$workers.yml
    python3 "$repo/tests/testbed/lab.py" inventory --control-planes "$control_planes" --workers "$workers" > "$inventory"
    cp -r "$repo/inventories/lab/group_vars" "$cache/lab/"
    ;;
esac
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
