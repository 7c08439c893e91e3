"""The Kubernetes conformance suite against a lab cluster, offline.

    conformance.py build                 e2e.test and ginkgo at the pinned Kubernetes version
    conformance.py run [--name lab]      the [Conformance] suite: the parallel part, then [Serial]
        [--subset all|network]           network: the [sig-network] conformance tests only
        [--nodes N]                      ginkgo processes for the parallel part (default 4)
        [--up --down]                    bring the lab set up (site.yml) first / take it down after
        [--focus REGEX]                  only the conformance tests whose name matches (a re-run)
    conformance.py summary [DIR]         the summary of a run (default: the last one)

`run` builds what is missing (e2e.test, ginkgo, every image the suite uses),
starts the set's registry (tests/testbed/e2eimages.py) and pushes the images
to it: the lab hosts pull registry.k8s.io's images from there
(containerd_registry_mirrors in inventories/lab/group_vars/all.yml). It
writes the junit reports, the ginkgo output and summary.json / summary.txt
under $HARDWAY_CACHE/conformance/runs/<time>-<subset>/ and prints the summary.
It exits 1 when a test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2eimages  # noqa: E402
import lab  # noqa: E402
import mirror  # noqa: E402

REPO = mirror.REPO
CONFORMANCE = mirror.CACHE / "conformance"
RUNS = CONFORMANCE / "runs"
CONFORMANCE_FOCUS = r"\[Conformance\]"
# Tests that need their node to be cut off or rebooted ([Disruptive]) run in
# the serial part with the rest of [Serial].
SERIAL = r"\[Serial\]|\[Disruptive\]"
SUBSETS = {"all": "", "network": r"\[sig-network\]"}
SUBSET_TAGS = {"network": "[sig-network]"}


def log(msg: str) -> None:
    print(f"conformance: {msg}", flush=True)


def binaries(version: str) -> tuple[Path, Path]:
    out = CONFORMANCE / version
    return out / "e2e.test", out / "ginkgo"


def build(version: str | None = None) -> tuple[Path, Path]:
    """e2e.test (`go test -c` of k8s.io/kubernetes/test/e2e) and the ginkgo its go.mod pins."""
    version = version or mirror.load_versions()[0]["kubernetes"]
    e2e, ginkgo = binaries(version)
    if e2e.exists() and ginkgo.exists():
        log(f"e2e.test and ginkgo {version}: cached")
        return e2e, ginkgo
    log(f"building e2e.test and ginkgo for Kubernetes {version} (about 7 min with the build cache "
        f"of `make mirror`, longer cold; log: {mirror.LOGS / f'e2e-{version}.log'})")
    start = time.monotonic()
    b = mirror.Builder("e2e", version)
    try:
        mirror.k8s_wrapper(b, version)
        b.require_packages(["github.com/onsi/ginkgo/v2/ginkgo", "k8s.io/kubernetes/test/e2e"])
        bindir = b.work / "bin"
        b.build(["github.com/onsi/ginkgo/v2/ginkgo"], bindir)
        b.run(["go", "test", "-c", "-trimpath", "-ldflags", mirror.k8s_ldflags(version),
               "-o", str(bindir / "e2e.test"), "k8s.io/kubernetes/test/e2e"])
    finally:
        b.log.close()
    e2e.parent.mkdir(parents=True, exist_ok=True)
    for src, dest in ((bindir / "e2e.test", e2e), (bindir / "ginkgo", ginkgo)):
        shutil.copy2(src, dest.with_suffix(".part"))
        dest.with_suffix(".part").rename(dest)
    log(f"e2e.test and ginkgo built in {time.monotonic() - start:.0f}s")
    return e2e, ginkgo


def state_dir(name: str) -> Path:
    if name == "lab":
        return Path(os.environ.get("HARDWAY_LAB_STATE") or mirror.CACHE / "lab" / "state")
    return mirror.CACHE / "conformance" / f"state-{name}"


def inventory_of(name: str, workers: int) -> Path:
    if name == "lab":
        return REPO / "inventories" / "lab" / "hosts.yml"
    return lab.write_inventory(mirror.CACHE / "conformance" / f"inventory-{name}", workers, name)


def bring_up(name: str, workers: int) -> None:
    log(f"bringing up lab set {name} ({workers} workers) and deploying it with site.yml")
    subprocess.run([sys.executable, str(REPO / "tests/testbed/lab.py"), "up", "--name", name,
                    "--workers", str(workers)], check=True)
    env = dict(os.environ, HARDWAY_LAB_STATE=str(state_dir(name)))
    subprocess.run(["ansible-playbook", "-i", str(inventory_of(name, workers)),
                    str(REPO / "playbooks" / "site.yml")], check=True, env=env, cwd=REPO)


def ginkgo_run(ginkgo: Path, e2e: Path, out: Path, label: str, focus: str, skip: str,
               nodes: int, kubeconfig: Path, timeout: str) -> int:
    """One ginkgo run of e2e.test; its output goes to out/<label>.log (and a line per spec to stdout)."""
    kubectl = mirror.k8s_binary("kubectl")
    cmd = [str(ginkgo), f"--nodes={nodes}", f"--focus={focus}", f"--timeout={timeout}",
           "--no-color", "--output-dir", str(out), "--junit-report", f"junit-{label}.xml",
           "--json-report", f"report-{label}.json"]
    if skip:
        cmd.append(f"--skip={skip}")
    cmd += [str(e2e), "--", f"--kubeconfig={kubeconfig}", "--provider=skeleton",
            f"--kubectl-path={kubectl}", f"--report-dir={out}", "--disable-log-dump"]
    log(f"{label}: {' '.join(cmd[:4])} ... ({nodes} process{'es' if nodes > 1 else ''})")
    start = time.monotonic()
    log_path = out / f"{label}.log"
    with log_path.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=out)
        # Progress once a minute: ginkgo prints a "•" per finished spec (passed
        # or not) and "[FAILED] [" at the head of each failure's report.
        shown = start
        while proc.poll() is None:
            time.sleep(5)
            if time.monotonic() - shown >= 60:
                shown = time.monotonic()
                text = log_path.read_text(errors="replace")
                print(f"  {label} {(shown - start) / 60:5.1f} min: {text.count('•')} specs done, "
                      f"{text.count('[FAILED] [')} failed", flush=True)
        code = proc.wait()
    tail = log_path.read_text(errors="replace").splitlines()[-12:]
    print("\n".join(f"  {label} | {line}" for line in tail if line.strip()), flush=True)
    log(f"{label}: exit {code} after {(time.monotonic() - start) / 60:.1f} min")
    return code


def junit_results(path: Path) -> list[dict]:
    """Every [Conformance] spec of a ginkgo junit report: name, state, seconds, message."""
    out = []
    if not path.exists():
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if "[Conformance]" not in name:
            continue
        state = case.get("status") or "passed"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        message = (failure.get("message") or failure.text or "")[:400] if failure is not None else ""
        out.append({"name": name.strip(), "state": state, "seconds": float(case.get("time") or 0),
                    "message": message})
    return out


def summarize(out: Path, expected: int, minutes: dict, tag: str = "") -> dict:
    """The summary of a run's reports; ``tag`` keeps the tests of a subset ([sig-network])."""
    # Each part's report lists every conformance test, those of the other
    # part as skipped: a test counts once, as the part that ran it says.
    rank = {"failed": 2, "passed": 1, "skipped": 0}
    merged: dict[str, dict] = {}
    for label in ("parallel", "serial"):
        for r in junit_results(out / f"junit-{label}.xml"):
            r["part"] = label
            if r["name"] not in merged or rank[r["state"]] > rank[merged[r["name"]]["state"]]:
                merged[r["name"]] = r
    results = [r for r in merged.values() if tag in r["name"]]
    counts = {s: sum(1 for r in results if r["state"] == s) for s in ("passed", "failed", "skipped")}
    if not expected:  # a --focus run: the tests it selected
        results = [r for r in results if r["state"] != "skipped"]
        counts["skipped"] = 0
        expected = len(results)
    summary = {"dir": str(out), "expected": expected, "ran": len(results), **counts,
               "minutes": minutes, "failed_tests": [r for r in results if r["state"] == "failed"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [f"conformance summary ({out.name})",
             f"  {counts['passed']}/{expected} passed, {counts['failed']} failed, "
             f"{counts['skipped']} skipped, {expected - len(results)} not run",
             "  minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())]
    for r in summary["failed_tests"]:
        lines.append(f"  FAILED ({r['part']}) {r['name']}")
        if r["message"]:
            lines.append(f"      {r['message'].splitlines()[0][:200]}")
    lines.append(f"  reports: {out}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return summary


def expected_count(e2e: Path, subset: str) -> int:
    """How many [Conformance] specs the subset has, from e2e.test's own list."""
    listed = subprocess.run([str(e2e), "--list-conformance-tests"], capture_output=True, text=True,
                            check=True).stdout
    names = [line for line in listed.splitlines() if line.startswith("- testname:")]
    if subset == "all":
        return len(names)
    # Each entry's codename starts with its sig, as the test's name does.
    entries = listed.split("- testname:")[1:]
    return sum(1 for e in entries if f"codename: '{SUBSET_TAGS[subset]}" in e)


def forget_images(name: str) -> None:
    """Take the suite's images (not the sandbox image) off the set's hosts, so
    that this run pulls what it has just pushed, not an older build."""
    refs = [image.ref for image in e2eimages.images() if "/pause:" not in image.ref]
    hosts = subprocess.run(["docker", "ps", "--format", "{{.Names}}", "--filter", f"name=^{name}-"],
                           capture_output=True, text=True, check=True).stdout.split()
    for host in hosts:
        if host.endswith("-registry"):
            continue
        subprocess.run(["docker", "exec", host, "ctr", "-n", "k8s.io", "images", "rm", *refs],
                       capture_output=True, check=False)


def run(name: str, subset: str, nodes: int, up: bool, down: bool, workers: int, only: str = "") -> int:
    e2e, ginkgo = build()
    try:
        if up:
            bring_up(name, workers)
        kubeconfig = state_dir(name) / "admin.kubeconfig"
        if not kubeconfig.exists():
            raise SystemExit(f"conformance: no cluster on lab set {name}: {kubeconfig} is missing "
                             f"(make lab first, or --up)")
        registry = e2eimages.push_all(name)
        log(f"images pushed to the lab registry {registry}")
        forget_images(name)
        out = RUNS / f"{time.strftime('%Y%m%dT%H%M%S')}-{subset}"
        out.mkdir(parents=True)
        focus = SUBSETS[subset] + (".*" if SUBSETS[subset] else "") + CONFORMANCE_FOCUS
        if only:
            focus = f"(?:{only}).*{focus}"
        minutes = {}
        start = time.monotonic()
        code_p = ginkgo_run(ginkgo, e2e, out, "parallel", focus, SERIAL, nodes, kubeconfig, "4h")
        minutes["parallel"] = (time.monotonic() - start) / 60
        start = time.monotonic()
        code_s = ginkgo_run(ginkgo, e2e, out, "serial", f"(?:{SERIAL}).*{focus}|{focus}.*(?:{SERIAL})",
                            "", 1, kubeconfig, "4h")
        minutes["serial"] = (time.monotonic() - start) / 60
        minutes["total"] = minutes["parallel"] + minutes["serial"]
        summary = summarize(out, expected_count(e2e, subset) if not only else 0, minutes,
                            SUBSET_TAGS.get(subset, ""))
        ok = code_p == 0 and code_s == 0 and summary["failed"] == 0 and summary["ran"] > 0
        return 0 if ok else 1
    finally:
        if down:
            subprocess.run([sys.executable, str(REPO / "tests/testbed/lab.py"), "down", "--name", name],
                           check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build")
    p = sub.add_parser("run")
    p.add_argument("--name", default="lab")
    p.add_argument("--subset", choices=list(SUBSETS), default="all")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--up", action="store_true")
    p.add_argument("--down", action="store_true")
    p.add_argument("--focus", default="", help="only the conformance tests whose name matches")
    p = sub.add_parser("summary")
    p.add_argument("dir", nargs="?")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build()
        return 0
    if args.cmd == "run":
        return run(args.name, args.subset, args.nodes, args.up, args.down, args.workers, args.focus)
    runs = sorted(RUNS.glob("*")) if RUNS.exists() else []
    target = Path(args.dir) if args.dir else (runs[-1] if runs else None)
    if target is None or not (target / "summary.txt").exists():
        raise SystemExit("conformance: no run with a summary yet")
    print((target / "summary.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
