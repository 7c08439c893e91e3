"""The CIS Kubernetes Benchmark on the lab hosts, with kube-bench.

    cis.py build [--force]              kube-bench into $HARDWAY_CACHE/cis/kube-bench-<version>/
    cis.py run [--name lab] [--keep]    every lab host of the set: its targets, totals, FAIL and WARN lines

kube-bench (github.com/aquasecurity/kube-bench) is built from the Go module
proxy like the test bed's other tools (mirror.py's helpers, same module and
build caches); its checks (cfg/, with the benchmark cis-1.12 that covers
Kubernetes 1.32 and later) come from the same module. Where to look on a host
is ours: tests/testbed/cis/config.yaml, written for the collection's layout
(units under /etc/systemd/system, /etc/kubernetes, /etc/kubernetes/pki,
/var/lib/etcd), given with --config; the checks themselves are not changed.

`run` finds the running lab hosts of a set (containers named <set>-*), asks
each which services it runs and picks its targets from that: etcd where etcd
runs, master and controlplane where kube-apiserver runs, node where kubelet
runs, and policies (cluster-wide, through kubectl and the host's admin
kubeconfig) once, on the first control-plane host. It copies kube-bench, the
checks and our config into the host (docker cp), runs it with --json, keeps
each host's report and a summary under $HARDWAY_CACHE/cis/<set>/, prints PASS,
FAIL, WARN and INFO per host and target and every FAIL and WARN check, and
exits 1 when a check failed.

Two things the lab hosts lack are supplied for kube-bench alone: jq (gojq,
built alongside) on its PATH, and bash as /bin/sh in a mount namespace of its
own (some audits use [[ ]], which Debian's dash does not know). And four checks
whose audit only looks for kubeadm's file names (admin.conf, *.crt, *.key) are
made here on the collection's files instead (OWN_FILE_CHECKS): kube-bench
skips them, and their results take their place in the totals.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mirror  # noqa: E402

MODULE = "github.com/aquasecurity/kube-bench"
VERSION = "0.15.6"
# The policies checks pipe kubectl's JSON through jq, which the lab hosts lack:
# gojq (a jq in Go) goes with kube-bench as bin/jq. 0.12.17: the releases after
# it need a snapshot of github.com/itchyny/go-yaml that the module proxy refuses.
JQ_MODULE = "github.com/itchyny/gojq"
JQ_VERSION = "0.12.17"
# Kubernetes 1.37's benchmark in kube-bench's checks (its own version mapping
# stops at 1.34, whose benchmark this is).
BENCHMARK = "cis-1.12"
CONFIG = Path(__file__).resolve().parent / "cis" / "config.yaml"
OUT = mirror.CACHE / "cis"
BUNDLE = OUT / f"kube-bench-{VERSION}"
# Where kube-bench goes on a lab host (removed again unless --keep).
REMOTE = "/opt/hardway-cis"
# kubectl for the policies target: the admin kubeconfig the kube_apiserver role
# installs on every control-plane host.
ADMIN_KUBECONFIG = "/etc/kubernetes/admin-local.kubeconfig"
TARGETS = ["master", "etcd", "controlplane", "node", "policies"]
STATES = ["PASS", "FAIL", "WARN", "INFO"]
SERVICES = ["etcd", "kube-apiserver", "kubelet"]
PKI = "/etc/kubernetes/pki"
STAT = "stat -c '%a %U:%G %n'"


@dataclass(frozen=True)
class OwnFileCheck:
    """A check whose audit only looks at kubeadm's file names, made on the collection's files.

    kube-bench is told to skip it (it counts INFO then); cis.py runs ``command``
    on the host (one "<octal mode> <owner>:<group> <path>" line per file) and
    judges each file as the check would: ``mode`` no permission beyond
    ``want`` (an octal mode), ``owner`` equal to ``want``. The result takes the
    check's place in the totals: PASS, or FAIL for a scored check (WARN for a
    manual one), also when no file is found.
    """
    target: str
    scored: bool
    text: str
    command: str
    kind: str
    want: str


OWN_FILE_CHECKS = {
    "1.1.13": OwnFileCheck("master", True, f"The admin kubeconfig ({ADMIN_KUBECONFIG}) is 600 or stricter",
                           f"{STAT} {ADMIN_KUBECONFIG}", "mode", "600"),
    "1.1.14": OwnFileCheck("master", True, f"The admin kubeconfig ({ADMIN_KUBECONFIG}) is owned by root:root",
                           f"{STAT} {ADMIN_KUBECONFIG}", "owner", "root:root"),
    "1.1.20": OwnFileCheck("master", False, f"Certificates and public keys in {PKI} (*.pem, *.pub) are 644 or "
                           "stricter", f"find {PKI} -type f ! -name '*-key.pem' -exec {STAT} {{}} +", "mode", "644"),
    "1.1.21": OwnFileCheck("master", False, f"Private keys in {PKI} (*-key.pem) are 600 or stricter",
                           f"find {PKI} -type f -name '*-key.pem' -exec {STAT} {{}} +", "mode", "600"),
}


def log(msg: str) -> None:
    print(f"cis: {msg}", flush=True)


# -- build -------------------------------------------------------------------

def bundle_stamp() -> str:
    return f"{MODULE} v{VERSION}\n{JQ_MODULE} v{JQ_VERSION} (bin/jq)\n"


def bundle_ready(bundle: Path = BUNDLE) -> bool:
    """Whether the bundle holds kube-bench, jq and the checks, built at these versions."""
    stamp = bundle / "VERSION"
    return ((bundle / "kube-bench").is_file() and (bundle / "bin" / "jq").is_file()
            and (bundle / "cfg" / BENCHMARK).is_dir() and stamp.is_file() and stamp.read_text() == bundle_stamp())


def go_build(name: str, version: str, module: str, pkg: str, ldflags: str) -> tuple[Path, Path]:
    """(binary, module directory) of one Go command built from the module proxy."""
    b = mirror.Builder(name, version)
    try:
        bindir = mirror.go_install_build(b, module, f"v{version}", [pkg], ldflags=ldflags)
        return bindir / pkg.rsplit("/", 1)[-1], b.module_dir(module, f"v{version}")
    finally:
        b.log.close()


def cmd_build(force: bool) -> int:
    if bundle_ready() and not force:
        log(f"kube-bench {VERSION} with gojq {JQ_VERSION}: cached at {BUNDLE}")
        return 0
    log(f"kube-bench {VERSION} and gojq {JQ_VERSION}: building (logs: {mirror.LOGS}/kube-bench-{VERSION}.log, "
        f"gojq-{JQ_VERSION}.log)")
    start = time.monotonic()
    try:
        kube_bench, moddir = go_build("kube-bench", VERSION, MODULE, MODULE,
                                      f"-s -w -X {MODULE}/cmd.KubeBenchVersion={VERSION}")
        jq = go_build("gojq", JQ_VERSION, JQ_MODULE, f"{JQ_MODULE}/cmd/gojq", "-s -w")[0]
    except (mirror.BuildError, OSError) as exc:
        print(f"cis: FAILED: {exc}", file=sys.stderr)
        return 1
    checks = moddir / "cfg"
    staging = OUT / f".kube-bench-{VERSION}.new"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    shutil.copy2(kube_bench, staging / "kube-bench")
    shutil.copy2(jq, staging / "bin" / "jq")
    # The module cache is read-only; the copy is made writable so it can be replaced.
    shutil.copytree(checks, staging / "cfg", copy_function=shutil.copyfile)
    for path in [staging / "cfg", *(staging / "cfg").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (staging / "VERSION").write_text(bundle_stamp())
    shutil.rmtree(BUNDLE, ignore_errors=True)
    staging.rename(BUNDLE)
    log(f"kube-bench {VERSION} with gojq {JQ_VERSION}: built in {time.monotonic() - start:.0f}s at {BUNDLE}")
    return 0


# -- what to run where -----------------------------------------------------------

def plan_targets(active: dict[str, bool], policies: bool) -> list[str]:
    """kube-bench's targets for a host, from the services it runs.

    ``policies`` says whether this host runs the cluster-wide checks (one
    control-plane host does, for the whole cluster).
    """
    targets = []
    if active.get("kube-apiserver"):
        targets.append("master")
    if active.get("etcd"):
        targets.append("etcd")
    if active.get("kube-apiserver"):
        targets.append("controlplane")
    if active.get("kubelet"):
        targets.append("node")
    if policies and active.get("kube-apiserver"):
        targets.append("policies")
    return targets


def host_order(name: str) -> tuple[int, int, str]:
    """Control planes first (cp1, cp2, ...), then workers, by number."""
    role = name.rsplit("-", 1)[-1]
    kind = 0 if role.startswith("cp") else 1
    digits = "".join(c for c in role if c.isdigit())
    return kind, int(digits or 0), name


# -- reading kube-bench's report -----------------------------------------------

def summarize(report: dict) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """Counts per target and the checks that did not pass, from one --json report.

    Returns ({target: {PASS: n, FAIL: n, WARN: n, INFO: n}}, [{target, id,
    status, text, scored}] for each FAIL and WARN check).
    """
    totals: dict[str, dict[str, int]] = {}
    findings = []
    for controls in report.get("Controls") or []:
        target = controls.get("node_type", "?")
        counts = totals.setdefault(target, dict.fromkeys(STATES, 0))
        for group in controls.get("tests") or []:
            for check in group.get("results") or []:
                status = check.get("status", "")
                if status in counts:
                    counts[status] += 1
                if status in ("FAIL", "WARN"):
                    findings.append({"target": target, "id": check.get("test_number", ""),
                                     "status": status, "text": check.get("test_desc", ""),
                                     "scored": bool(check.get("scored"))})
    return totals, findings


def judge(check: OwnFileCheck, output: str) -> tuple[bool, str]:
    """Whether every file in ``output`` (lines "<mode> <owner>:<group> <path>") passes, and what was seen."""
    lines = [line.split(" ", 2) for line in output.splitlines() if line.strip()]
    if not lines or any(len(parts) != 3 or not set(parts[0]) <= set("01234567") for parts in lines):
        return False, output.strip() or "no such file"
    bad = []
    for mode, owner, path in lines:
        if check.kind == "mode":
            ok = (int(mode, 8) & ~int(check.want, 8)) == 0
        else:
            ok = owner == check.want
        if not ok:
            bad.append(f"{path} {mode} {owner}")
    if bad:
        return False, "; ".join(bad)
    return True, f"{len(lines)} file(s): " + ", ".join(sorted({f"{m} {o}" for m, o, _p in lines}))


def apply_own_checks(totals: dict[str, dict[str, int]], findings: list[dict],
                     own: list[dict]) -> None:
    """Put cis.py's own-file results in place of the checks kube-bench skipped (counted INFO)."""
    for result in own:
        counts = totals.get(result["target"])
        if counts is None:
            continue
        counts["INFO"] -= 1
        counts[result["status"]] += 1
        if result["status"] != "PASS":
            findings.append({"target": result["target"], "id": result["id"], "status": result["status"],
                             "text": f"{result['text']} (cis.py: {result['detail']})",
                             "scored": result["scored"]})


def check_key(check_id: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in check_id.split("."))


def render(results: dict[str, dict]) -> str:
    """The table of totals per host and target, then the FAIL and WARN checks.

    ``results`` maps a host to {"totals": ..., "findings": ...} (see summarize).
    A check that did not pass on several hosts is listed once, with its hosts.
    """
    lines = [f"{'host':<14} {'target':<13} " + " ".join(f"{s:>5}" for s in STATES)]
    sums = dict.fromkeys(STATES, 0)
    for host, result in results.items():
        for target in sorted(result["totals"], key=lambda t: TARGETS.index(t) if t in TARGETS else 99):
            counts = result["totals"][target]
            lines.append(f"{host:<14} {target:<13} " + " ".join(f"{counts[s]:>5}" for s in STATES))
            for s in STATES:
                sums[s] += counts[s]
    lines.append(f"{'all':<14} {'':<13} " + " ".join(f"{sums[s]:>5}" for s in STATES))
    own = [(host, c) for host, result in results.items() for c in result.get("own_checks", [])]
    if own:
        lines.append("")
        lines.append("Made by cis.py on the collection's files (kube-bench's audit looks only for kubeadm's "
                     "names; counted above in its place):")
        for host, c in own:
            lines.append(f"  {c['status']} {c['id']:<7} {c['text']}: {c['detail']}  [{c['target']}: {host}]")
    for status in ("FAIL", "WARN"):
        seen: dict[tuple[str, str], dict] = {}
        for host, result in results.items():
            for f in result["findings"]:
                if f["status"] == status:
                    entry = seen.setdefault((f["target"], f["id"]), {**f, "hosts": []})
                    entry["hosts"].append(host)
        if not seen:
            continue
        lines.append("")
        lines.append(f"{status} ({len(seen)}):")
        for (_target, _id), f in sorted(seen.items(), key=lambda kv: check_key(kv[0][1])):
            lines.append(f"  {status} {f['id']:<7} {f['text']}  [{f['target']}: {', '.join(f['hosts'])}]")
    return "\n".join(lines)


# -- running on the lab -----------------------------------------------------------

def docker(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = ["docker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"cis: `{' '.join(cmd[:4])} ...` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def lab_hosts(name: str) -> list[str]:
    out = docker("ps", "--filter", "label=hardway.lab=1", "--filter", "status=running",
                 "--format", "{{.Names}}").stdout.split()
    return sorted((h for h in out if h.startswith(name + "-")), key=host_order)


def active_services(host: str) -> dict[str, bool]:
    proc = docker("exec", host, "systemctl", "is-active", *SERVICES, check=False)
    states = proc.stdout.split()
    return {svc: i < len(states) and states[i] == "active" for i, svc in enumerate(SERVICES)}


def own_checks(host: str, targets: list[str]) -> list[dict]:
    """The OWN_FILE_CHECKS of these targets, made on the host."""
    out = []
    for check_id, check in OWN_FILE_CHECKS.items():
        if check.target not in targets:
            continue
        proc = docker("exec", host, "sh", "-c", check.command, check=False)
        ok, detail = judge(check, proc.stdout)
        status = "PASS" if ok else ("FAIL" if check.scored else "WARN")
        out.append({"id": check_id, "target": check.target, "status": status, "text": check.text,
                    "detail": detail, "scored": check.scored})
    return out


def kube_bench_argv(targets: list[str], skip: list[str]) -> list[str]:
    """kube-bench's command line on a host, in a mount namespace of its own where /bin/sh is bash.

    kube-bench runs every audit with /bin/sh; some of the benchmark's audits
    use bash's [[ ]], which Debian's sh (dash) lacks. The bind mount is seen by
    kube-bench and its audits only; the host's /bin/sh stays dash.
    """
    argv = [f"{REMOTE}/kube-bench", "run", "--targets", ",".join(targets), "--benchmark", BENCHMARK,
            "--config-dir", f"{REMOTE}/cfg", "--config", f"{REMOTE}/hardway-config.yaml", "--json"]
    if skip:
        argv += ["--skip", ",".join(skip)]
    return ["unshare", "--mount", "--propagation", "private", "/bin/bash", "-c",
            'mount --bind /bin/bash /bin/sh && exec "$@"', "kube-bench", *argv]


def run_host(host: str, targets: list[str], keep: bool) -> tuple[dict, list[dict]]:
    """kube-bench's report for the host's targets, and cis.py's own-file checks."""
    docker("exec", host, "rm", "-rf", REMOTE)
    docker("cp", str(BUNDLE), f"{host}:{REMOTE}")
    docker("cp", str(CONFIG), f"{host}:{REMOTE}/hardway-config.yaml")
    own = own_checks(host, targets)
    cmd = ["exec", "-e", f"KUBECONFIG={ADMIN_KUBECONFIG}",
           "-e", f"PATH={REMOTE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           host, *kube_bench_argv(targets, [c["id"] for c in own])]
    proc = docker(*cmd, check=False)
    if not keep:
        docker("exec", host, "rm", "-rf", REMOTE, check=False)
    try:
        return json.loads(proc.stdout), own
    except json.JSONDecodeError:
        raise SystemExit(f"cis: kube-bench on {host} gave no report (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}") from None


def cmd_run(name: str, keep: bool) -> int:
    if not bundle_ready():
        raise SystemExit(f"cis: no kube-bench at {BUNDLE}: run `cis.py build` first")
    hosts = lab_hosts(name)
    if not hosts:
        raise SystemExit(f"cis: no running lab hosts named {name}-*: start the lab first (make lab)")
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    results: dict[str, dict] = {}
    policies_done = False
    for host in hosts:
        active = active_services(host)
        targets = plan_targets(active, policies=not policies_done)
        policies_done = policies_done or "policies" in targets
        if not targets:
            log(f"{host}: runs none of {', '.join(SERVICES)}; skipped")
            continue
        log(f"{host}: kube-bench {VERSION} {BENCHMARK} --targets {','.join(targets)}")
        report, own = run_host(host, targets, keep)
        (out / f"{host}.json").write_text(json.dumps(report, indent=1))
        totals, findings = summarize(report)
        missing = [t for t in targets if t not in totals]
        if missing:
            raise SystemExit(f"cis: {host}: kube-bench reported nothing for {', '.join(missing)}")
        apply_own_checks(totals, findings, own)
        results[host] = {"targets": targets, "totals": totals, "findings": findings, "own_checks": own}
    text = render(results)
    (out / "summary.json").write_text(json.dumps(
        {"kube_bench": VERSION, "benchmark": BENCHMARK, "hosts": results}, indent=1))
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    fails = sum(r["totals"][t]["FAIL"] for r in results.values() for t in r["totals"])
    log(f"reports and summary in {out}")
    if fails:
        log(f"{fails} check(s) FAILED")
        return 1
    log("no check failed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build", help=f"build kube-bench {VERSION} (cached)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p = sub.add_parser("run", help="run the benchmark on the lab hosts of a set")
    p.add_argument("--name", default="lab", help="the lab set: hosts named <name>-* (default: lab)")
    p.add_argument("--keep", action="store_true", help=f"leave kube-bench in {REMOTE} on the hosts")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        return cmd_build(args.force)
    return cmd_run(args.name, args.keep)


if __name__ == "__main__":
    sys.exit(main())
