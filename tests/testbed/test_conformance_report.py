"""The conformance runner's report reading (tests/testbed/conformance.py), on a small ginkgo junit file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import conformance  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="0" errors="0" failures="1" time="90">
  <testsuite name="Kubernetes e2e suite" tests="5" failures="1" errors="0" time="90">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="3"/>
    <testcase name="[sig-network] DNS should provide DNS for services  [Conformance]"
              classname="Kubernetes e2e suite" status="passed" time="20.5"/>
    <testcase name="[sig-node] Pods should be submitted and removed [NodeConformance] [Conformance]"
              classname="Kubernetes e2e suite" status="failed" time="40">
      <failure message="pod never ran" type="failed">Timed out after 300s</failure>
    </testcase>
    <testcase name="[sig-apps] Job should run a job [Conformance]" classname="Kubernetes e2e suite"
              status="skipped" time="0"><skipped message="skipped"/></testcase>
    <testcase name="[sig-storage] not conformance" classname="Kubernetes e2e suite" status="passed" time="1"/>
  </testsuite>
</testsuites>
"""


def test_only_conformance_specs_are_counted(tmp_path):
    (tmp_path / "junit-parallel.xml").write_text(JUNIT)
    results = conformance.junit_results(tmp_path / "junit-parallel.xml")
    assert [(r["state"], r["seconds"]) for r in results] == [
        ("passed", 20.5), ("failed", 40.0), ("skipped", 0.0)]
    assert results[1]["message"] == "pod never ran"
    assert conformance.junit_results(tmp_path / "missing.xml") == []


def test_summary_counts_and_names_failures(tmp_path):
    (tmp_path / "junit-parallel.xml").write_text(JUNIT)
    summary = conformance.summarize(tmp_path, 462, {"parallel": 1.5, "serial": 0.0, "total": 1.5})
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["ran"]) == (1, 1, 1, 3)
    assert json.loads((tmp_path / "summary.json").read_text())["failed_tests"][0]["part"] == "parallel"
    text = (tmp_path / "summary.txt").read_text()
    assert "1/462 passed, 1 failed, 1 skipped, 459 not run" in text
    assert "FAILED (parallel) [sig-node] Pods should be submitted and removed" in text


def test_a_test_counts_once_as_the_part_that_ran_it(tmp_path):
    """The serial part's report lists the parallel part's tests as skipped, and the other way round."""
    (tmp_path / "junit-parallel.xml").write_text(JUNIT)
    serial = JUNIT.replace('status="passed" time="20.5"', 'status="skipped" time="0"').replace(
        '<testcase name="[sig-apps] Job should run a job [Conformance]" classname="Kubernetes e2e suite"\n'
        '              status="skipped" time="0"><skipped message="skipped"/></testcase>',
        '<testcase name="[sig-apps] Job should run a job [Conformance]" classname="Kubernetes e2e suite"\n'
        '              status="passed" time="7"/>')
    (tmp_path / "junit-serial.xml").write_text(serial)
    summary = conformance.summarize(tmp_path, 3, {"total": 1.0})
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["ran"]) == (2, 1, 0, 3)
    assert "2/3 passed, 1 failed, 0 skipped, 0 not run" in (tmp_path / "summary.txt").read_text()


def test_a_subset_counts_its_own_tests(tmp_path):
    (tmp_path / "junit-parallel.xml").write_text(JUNIT)
    summary = conformance.summarize(tmp_path, 1, {"total": 0.5}, "[sig-network]")
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["ran"]) == (1, 0, 0, 1)
