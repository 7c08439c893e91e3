"""The collection builds with ansible-galaxy, installs into an empty path, and
ansible-doc shows its modules from there (not from this checkout)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULES = ["pki", "kubeconfig", "etcd_key", "etcd_auth", "etcd_member", "flannel_network", "node_ready",
           "install_files", "artifact_fetch", "services", "preflight"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("galaxy")
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(work), str(REPO)],
                   check=True, capture_output=True, text=True)
    tarball = work / f"hardway-kubernetes-{version}.tar.gz"
    assert tarball.exists()
    target = work / "collections"
    subprocess.run(["ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", str(target), str(tarball)],
                   check=True, capture_output=True, text=True)
    return tarball, target


def test_tarball_leaves_out_the_test_bed(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "roles/kubelet/tasks/main.yml" in names
    assert "playbooks/site.yml" in names
    assert not [n for n in names if n.startswith(("tests/", "extensions/", "inventories/lab", ".ci"))]
    assert not [n for n in names if n.endswith(".sha256cache")]
    # the repository's own site.yml stays out: the collection's playbook is playbooks/site.yml
    assert "site.yml" not in names


def test_tarball_has_what_ansible_builder_and_galaxy_read(installed):
    """ansible-builder reads the controller's Python packages from meta/ (a file left out by build_ignore
    would be silently missing from an execution environment); Galaxy shows changelogs/changelog.yaml."""
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        meta = yaml.safe_load(tar.extractfile("meta/execution-environment.yml"))
        python_file = meta["dependencies"]["python"]
        packages = tar.extractfile(python_file).read().decode()
    assert python_file in names
    assert {"cryptography", "netaddr"} <= {line.split(">")[0].split("=")[0].strip() for line in packages.splitlines()
                                           if line.strip() and not line.startswith("#")}
    assert "changelogs/changelog.yaml" in names


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_shows_module_from_the_installed_collection(installed, module):
    target = installed[1]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target))
    for name in ("PYTHONPATH", "ANSIBLE_CONFIG"):
        env.pop(name, None)
    proc = subprocess.run(["ansible-doc", "--json", f"hardway.kubernetes.{module}"], env=env, cwd="/",
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)[f"hardway.kubernetes.{module}"]
    assert doc["doc"]["filename"].startswith(str(target))
    assert doc["doc"]["short_description"]
    assert doc["examples"] and doc["return"]


def test_site_playbook_is_reachable_by_its_collection_name(installed):
    target = installed[1]
    site = target / "ansible_collections" / "hardway" / "kubernetes" / "playbooks" / "site.yml"
    assert site.exists()
