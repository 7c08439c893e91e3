"""Request a Service of a lab cluster every 0.2 s from a lab host, for as long as a change takes.

`web_workload(namespace, image)` is what is asked: a 2-replica agnhost Deployment spread over the
nodes, behind a Service, with a PodDisruptionBudget that keeps one replica available; each pod
answers for 5 s more once told to stop, while kube-proxy on every node drops it.

`ServiceProbe(on, url)` starts a small Python loop on the lab host ``on`` (it runs there, not
through one `docker exec` per request, so that the machine's load does not count as failures):
each request has a one-second timeout and its outcome goes to a file on the host, one line each.
Counting begins once the Service has answered five times in a row.
`stop()` ends the loop and says how many requests were made and failed, the longest run of
failures in seconds, and which backends answered (agnhost's /hostname).
"""

from __future__ import annotations

import subprocess
import time

LOOP = r"""
import sys, time, urllib.request
url, out, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(out, 'a', buffering=1) as log:
    while True:
        start = time.time()
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                log.write('%.3f ok %s\n' % (start, answer.read(200).decode(errors='replace').strip()))
        except Exception as exc:
            log.write('%.3f fail %s\n' % (start, type(exc).__name__))
        time.sleep(max(0.0, every - (time.time() - start)))
"""
SCRIPT = "/run/hardway-probe.py"
# matches the loop's command line, not that of the shell that runs pkill
PATTERN = "[/]run/hardway-probe.py"
WORKLOAD = """
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      topologySpreadConstraints:
        - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway,
            labelSelector: {{matchLabels: {{app: web}}}}}}
      containers:
        - name: web
          image: {image}
          imagePullPolicy: Never
          args: [netexec, --http-port=8080]
          ports: [{{containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /healthz, port: 8080}}
            periodSeconds: 1
          lifecycle:
            preStop:
              sleep: {{seconds: 5}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: web, namespace: {ns}}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: web}}}}
"""


def web_workload(namespace: str, image: str) -> str:
    """The manifests of the workload the probe asks (``kubectl apply -f -``); its URL is
    ``http://<the Service's cluster IP>/hostname``."""
    return WORKLOAD.format(ns=namespace, image=image)


LOG = "/run/hardway-probe.log"


def _exec(on: str, *args: str, stdin: str | None = None, detach: bool = False) -> str:
    cmd = ["docker", "exec", *(["-d"] if detach else ["-i"]), on, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=True).stdout


def summarise(lines: list[str]) -> dict:
    """Requests made and failed, the longest run of failures (s) and the backends that answered."""
    made = failed = 0
    longest = 0.0
    first_fail = None
    backends: set[str] = set()
    last = None
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        when, outcome = float(parts[0]), parts[1]
        made += 1
        last = when
        if outcome == "ok":
            if len(parts) > 2:
                backends.add(parts[2])
            if first_fail is not None:
                longest = max(longest, when - first_fail)
                first_fail = None
        else:
            failed += 1
            if first_fail is None:
                first_fail = when
    if first_fail is not None and last is not None:
        longest = max(longest, last - first_fail)
    return {"made": made, "failed": failed, "longest_outage": round(longest, 1), "backends": sorted(backends),
            "failed_at_end": first_fail is not None}


class ServiceProbe:
    """A request every ``every`` seconds from lab host ``on`` to ``url`` until stopped."""

    def __init__(self, on: str, url: str, every: float = 0.2):
        self.on, self.url, self.every = on, url, every

    def start(self, settle: int = 5, timeout: float = 60) -> ServiceProbe:
        """Start the loop and return once the Service has answered ``settle`` times in a row (a Service
        created a moment ago may not be in every node's rules yet); only what follows is counted."""
        _exec(self.on, "sh", "-c", f"cat > {SCRIPT}; rm -f {LOG}", stdin=LOOP)
        _exec(self.on, "python3", SCRIPT, self.url, LOG, str(self.every), detach=True)
        self.skip = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = _exec(self.on, "sh", "-c", f"cat {LOG} 2>/dev/null || true").splitlines()
            if len(lines) >= settle and all(" ok " in line for line in lines[-settle:]):
                self.skip = len(lines)
                return self
            time.sleep(0.5)
        raise AssertionError(f"the Service at {self.url} did not answer {settle} times in a row from {self.on} "
                             f"within {timeout:g} s")

    def stop(self) -> dict:
        _exec(self.on, "sh", "-c", f"pkill -f '{PATTERN}' || true")
        return summarise(_exec(self.on, "cat", LOG).splitlines()[self.skip:])

    def __enter__(self) -> ServiceProbe:
        return self.start()

    def __exit__(self, *exc) -> None:
        subprocess.run(["docker", "exec", self.on, "pkill", "-f", PATTERN], capture_output=True, check=False)
