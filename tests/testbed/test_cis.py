"""The pure-Python parts of cis.py: which targets a host gets, reading
kube-bench's JSON report, the checks cis.py makes on the collection's own
files, the table, and the command line. No Docker, no Go, no lab."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cis  # noqa: E402


@pytest.mark.parametrize("active, policies, want", [
    ({"etcd": True, "kube-apiserver": True, "kubelet": False}, True,
     ["master", "etcd", "controlplane", "policies"]),
    ({"etcd": True, "kube-apiserver": True, "kubelet": False}, False, ["master", "etcd", "controlplane"]),
    ({"etcd": True, "kube-apiserver": True, "kubelet": True}, True,
     ["master", "etcd", "controlplane", "node", "policies"]),
    ({"etcd": False, "kube-apiserver": False, "kubelet": True}, True, ["node"]),
    ({"etcd": True, "kube-apiserver": False, "kubelet": False}, True, ["etcd"]),
    ({"etcd": False, "kube-apiserver": False, "kubelet": False}, True, []),
])
def test_targets_follow_the_services_a_host_runs(active, policies, want):
    assert cis.plan_targets(active, policies) == want


def test_hosts_are_ordered_control_planes_first_then_by_number():
    names = ["lab-w10", "lab-w2", "lab-cp2", "lab-w1", "lab-cp1"]
    assert sorted(names, key=cis.host_order) == ["lab-cp1", "lab-cp2", "lab-w1", "lab-w2", "lab-w10"]


def check(number, status, scored=True, text="a check"):
    return {"test_number": number, "test_desc": text, "status": status, "scored": scored}


REPORT = {
    "Controls": [
        {"id": "1", "node_type": "master", "tests": [
            {"section": "1.1", "results": [check("1.1.1", "PASS"), check("1.1.12", "FAIL", text="data dir owner"),
                                           check("1.1.13", "INFO")]},
            {"section": "1.2", "results": [check("1.2.1", "WARN", scored=False, text="anonymous")]},
        ]},
        {"id": "2", "node_type": "etcd", "tests": [
            {"section": "2", "results": [check("2.1", "PASS"), check("2.2", "PASS")]},
        ]},
    ],
    "Totals": {"total_pass": 3, "total_fail": 1, "total_warn": 1, "total_info": 1},
}


def test_summarize_counts_per_target_and_lists_what_did_not_pass():
    totals, findings = cis.summarize(REPORT)
    assert totals == {"master": {"PASS": 1, "FAIL": 1, "WARN": 1, "INFO": 1},
                      "etcd": {"PASS": 2, "FAIL": 0, "WARN": 0, "INFO": 0}}
    assert [(f["id"], f["status"], f["scored"]) for f in findings] == [
        ("1.1.12", "FAIL", True), ("1.2.1", "WARN", False)]


def test_summarize_of_an_empty_report():
    assert cis.summarize({}) == ({}, [])


MODE = cis.OwnFileCheck("master", True, "600 or stricter", "true", "mode", "600")
OWNER = cis.OwnFileCheck("master", True, "root:root", "true", "owner", "root:root")


@pytest.mark.parametrize("check, output, ok", [
    (MODE, "600 root:root /etc/kubernetes/admin-local.kubeconfig\n", True),
    (MODE, "400 root:root /a\n", True),
    (MODE, "640 root:root /a\n", False),
    (MODE, "600 root:root /a\n644 root:root /b\n", False),
    (cis.OwnFileCheck("master", False, "", "true", "mode", "644"), "644 root:root /a\n600 root:root /b\n", True),
    (OWNER, "600 root:root /a\n", True),
    (OWNER, "600 etcd:etcd /a\n", False),
    (MODE, "", False),  # no file found is no pass
    (MODE, "stat: cannot statx '/a': No such file or directory\n", False),
])
def test_judge_reads_mode_and_owner_as_the_benchmark_would(check, output, ok):
    assert cis.judge(check, output)[0] is ok


def test_judge_names_the_files_that_fail():
    ok, detail = cis.judge(MODE, "600 root:root /a\n644 root:root /b\n")
    assert not ok and detail == "/b 644 root:root"
    assert cis.judge(MODE, "")[1] == "no such file"


def test_own_checks_take_the_place_of_the_checks_kube_bench_skipped():
    totals = {"master": {"PASS": 10, "FAIL": 0, "WARN": 2, "INFO": 3}}
    findings = []
    own = [{"id": "1.1.13", "target": "master", "status": "PASS", "text": "t", "detail": "d", "scored": True},
           {"id": "1.1.20", "target": "master", "status": "WARN", "text": "certs", "detail": "/x 664 root:root",
            "scored": False},
           {"id": "1.1.14", "target": "master", "status": "FAIL", "text": "owner", "detail": "/y 600 a:b",
            "scored": True}]
    cis.apply_own_checks(totals, findings, own)
    assert totals == {"master": {"PASS": 11, "FAIL": 1, "WARN": 3, "INFO": 0}}
    assert [(f["id"], f["status"]) for f in findings] == [("1.1.20", "WARN"), ("1.1.14", "FAIL")]
    assert "cis.py: /y 600 a:b" in findings[1]["text"]


def test_every_own_check_names_a_check_of_the_benchmark_and_its_target():
    checks = yaml.safe_load((cis.BUNDLE / "cfg" / cis.BENCHMARK / "master.yaml").read_text()) \
        if cis.bundle_ready() else None
    for check_id, own in cis.OWN_FILE_CHECKS.items():
        assert own.target in cis.TARGETS and own.kind in ("mode", "owner")
        if checks is None:
            continue
        found = [c for g in checks["groups"] for c in g["checks"] if c["id"] == check_id]
        assert len(found) == 1, check_id
        assert bool(found[0].get("scored")) is own.scored, check_id


def test_render_lists_a_finding_once_with_every_host():
    result = {"targets": ["node"], "totals": {"node": {"PASS": 20, "FAIL": 1, "WARN": 1, "INFO": 0}},
              "findings": [{"target": "node", "id": "4.1.9", "status": "FAIL", "text": "kubelet config mode",
                            "scored": True},
                           {"target": "node", "id": "4.2.13", "status": "WARN", "text": "pod PIDs",
                            "scored": False}]}
    text = cis.render({"lab-w1": result, "lab-w2": result})
    lines = text.splitlines()
    assert lines[0].split() == ["host", "target", "PASS", "FAIL", "WARN", "INFO"]
    assert lines[1].split() == ["lab-w1", "node", "20", "1", "1", "0"]
    assert lines[3].split() == ["all", "40", "2", "2", "0"]
    assert "  FAIL 4.1.9   kubelet config mode  [node: lab-w1, lab-w2]" in lines
    assert text.index("FAIL (1):") < text.index("WARN (1):")


def test_kube_bench_runs_with_bash_for_sh_and_skips_the_own_checks():
    argv = cis.kube_bench_argv(["master", "etcd"], ["1.1.13", "1.1.14"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "mount --bind /bin/bash /bin/sh" in argv[6]
    run = argv[argv.index(f"{cis.REMOTE}/kube-bench"):]
    assert run[run.index("--targets") + 1] == "master,etcd"
    assert run[run.index("--benchmark") + 1] == "cis-1.12"
    assert run[run.index("--skip") + 1] == "1.1.13,1.1.14"
    assert "--json" in run
    assert "--skip" not in cis.kube_bench_argv(["node"], [])


def test_our_config_maps_every_target_of_the_benchmark():
    config = yaml.safe_load(cis.CONFIG.read_text())
    assert config["target_mapping"][cis.BENCHMARK] == ["master", "node", "controlplane", "etcd", "policies"]
    for target in cis.TARGETS:
        assert target in config, target
    assert config["version_mapping"]["1.37"] == cis.BENCHMARK
    # where the collection puts things (roles' defaults)
    assert config["master"]["apiserver"]["confs"] == ["/etc/systemd/system/kube-apiserver.service"]
    assert config["etcd"]["etcd"]["datadirs"] == ["/var/lib/etcd"]
    assert config["node"]["kubelet"]["confs"] == ["/var/lib/kubelet/config.yaml"]
    assert config["node"]["kubelet"]["kubeconfig"] == ["/etc/kubernetes/kubelet.kubeconfig"]
