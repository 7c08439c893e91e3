"""What the upgrade scenario's tests share: the lab's helpers on the path, and the workload a worker
host asks while a day-two playbook runs (each test module in its own namespace, NS)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "default" / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "tests" / "testbed"))
from labcluster import AGNHOST, kubectl  # noqa: E402
from serviceprobe import web_workload  # noqa: E402


@pytest.fixture(scope="module")
def web_service(request):
    """The URL of a 2-replica Deployment's Service (with a PodDisruptionBudget) in the module's NS."""
    namespace = request.module.NS
    kubectl("apply", "-f", "-", stdin=web_workload(namespace, AGNHOST))
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    address = kubectl("-n", namespace, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    yield f"http://{address}/hostname"
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)
