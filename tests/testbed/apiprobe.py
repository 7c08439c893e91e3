"""Probe the API of a lab cluster through a worker's local load balancer (the ha scenario, the benchmark).

`through_load_balancer(worker)` makes one authenticated read as the worker's kubelet does (its client
certificate, at https://127.0.0.1:6444); `Probe` repeats it every 0.2 s in a thread and, stopped,
says how many requests failed and how long the longest run of failures lasted; `lose_host()`
stops a lab host with `docker stop` while a probe runs and measures how soon the API answers again.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

PKI = "/etc/kubernetes/pki"
LB_PORT = 6444


def through_load_balancer(worker: str, timeout: float = 3) -> bool:
    """One read of the worker's own Node object through its local load balancer."""
    cmd = (f"curl -sS -m {timeout:g} --cacert {PKI}/kubernetes-ca.pem --cert {PKI}/kubelet-{worker}.pem "
           f"--key {PKI}/kubelet-{worker}-key.pem https://127.0.0.1:{LB_PORT}/api/v1/nodes/{worker}")
    try:
        proc = subprocess.run(["docker", "exec", worker, "sh", "-c", cmd], capture_output=True, text=True,
                              timeout=timeout + 7, check=False)
    except subprocess.TimeoutExpired:
        return False
    if proc.returncode != 0:
        return False
    try:
        return json.loads(proc.stdout)["metadata"]["name"] == worker
    except (ValueError, KeyError, TypeError):
        return False


def readyz(server_address: str, on: str, port: int = 6443) -> bool:
    """Whether the API server at ``server_address`` answers /readyz, asked from lab host ``on``."""
    cmd = f"curl -sS -m 3 --cacert {PKI}/kubernetes-ca.pem https://{server_address}:{port}/readyz"
    proc = subprocess.run(["docker", "exec", on, "sh", "-c", cmd], capture_output=True, text=True, timeout=10,
                          check=False)
    return proc.returncode == 0 and proc.stdout == "ok"


class Probe(threading.Thread):
    """Asks through a worker's load balancer every 0.2 s until stopped."""

    def __init__(self, worker: str, every: float = 0.2):
        super().__init__(daemon=True)
        self.worker, self.every, self.results, self.running = worker, every, [], True

    def run(self):
        while self.running:
            self.results.append((time.monotonic(), through_load_balancer(self.worker)))
            time.sleep(self.every)

    def stop(self) -> dict:
        """Requests made and failed, the longest run of failures (s), and whether it still failed at the end."""
        self.running = False
        self.join(timeout=15)
        longest, first_failure = 0.0, None
        for stamp, ok in self.results:
            if not ok and first_failure is None:
                first_failure = stamp
            elif ok and first_failure is not None:
                longest, first_failure = max(longest, stamp - first_failure), None
        return {"requests": len(self.results), "failed": sum(1 for _stamp, ok in self.results if not ok),
                "longest_outage": round(longest, 1), "still_failing": first_failure is not None}


def wait_for(check, limit: float, every: float = 0.2) -> float | None:
    """Seconds until check() is true, or None after ``limit`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start <= limit:
        if check():
            return round(time.monotonic() - start, 1)
        time.sleep(every)
    return None


def lose_host(lost: str, other_address: str, workers: list[str], limit: float = 60, watch: float = 20) -> dict:
    """`docker stop` a control-plane host while a probe asks through ``workers[0]``'s load balancer.

    Returns the seconds the stop took, the seconds after it until another control-plane host's API server
    (``other_address``, asked from ``workers[1]``) and ``workers[1]``'s load balancer answered, and the
    probe's figures over ``watch`` seconds after the stop.
    """
    probe = Probe(workers[0])
    probe.start()
    time.sleep(2)
    started = time.monotonic()
    subprocess.run(["docker", "stop", lost], check=True, capture_output=True, timeout=60)
    gone = time.monotonic()
    via_other = wait_for(lambda: readyz(other_address, workers[1]), limit)
    via_lb = wait_for(lambda: through_load_balancer(workers[1]), limit)
    time.sleep(max(0.0, gone + watch - time.monotonic()))
    return {"stop_seconds": round(gone - started, 1), "via_other_seconds": via_other, "via_lb_seconds": via_lb,
            **probe.stop()}
