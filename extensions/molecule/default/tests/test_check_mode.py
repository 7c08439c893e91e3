"""Check mode stays exact: `site.yml --check --diff` reports a hand edit, and only that.

One check run of site.yml against the converged lab hosts, after three edits
by hand: a comment appended to a worker's kubelet config (a plain file), one
appended to the control plane's Secrets encryption config (a file that holds
a key), and a label changed on a cluster object the collection applies (its
RBAC for the API server). The run must report exactly those, each on its
host, and the restart each file would cause; nothing else on any host; show
the plain edit in its diff and nothing of the secret file's content (old or
new) nor of any key; and restart, write or apply nothing itself. Then
everything is put back: the files byte for byte (the edits only appended, so
truncating to the old size restores them, inode, owner and mode untouched),
the label as it was. The check run uses the scenario's callback plugin
check_exact (plugins/callback), told only to report: the same plugin makes
molecule's `check` step fail on any change, and the first test here proves
that it does.

Runs in molecule's verify steps (inventory: the directory of
MOLECULE_INVENTORY_FILE) and by hand against another lab set, for example:

    HARDWAY_LAB_SET=dev2 HARDWAY_LAB_STATE=/tmp/dev2/state \
    HARDWAY_LAB_INVENTORY=/tmp/dev2/hosts.yml pytest extensions/molecule/default/tests/test_check_mode.py
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labcluster import ANSI, CP, HOSTS, RECAP, REPO, STATE, WORKERS, ansible_playbook, dns_mode, host, inventory, units

HERE = Path(__file__).resolve().parent
SCENARIO = HERE.parent
CALLBACKS = SCENARIO / "plugins" / "callback"
PLAIN = (WORKERS[0], "/var/lib/kubelet/config.yaml", "kubelet", "Restart kubelet")
SECRET = (CP, "/etc/kubernetes/encryption-config.yaml", "kube_apiserver", "Restart kube-apiserver")
# A cluster object the collection applies (kube_apiserver's RBAC), and a label of it that apply puts back.
OBJECT = ("clusterrole", "hardway:kube-apiserver-to-kubelet", "app.kubernetes.io/managed-by")


def check_env(report: Path, allow_changes: bool = True) -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="check_exact",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", HARDWAY_CHECK_REPORT=str(report),
               HARDWAY_CHECK_ALLOW_CHANGES="1" if allow_changes else "0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    return env


def service_starts(name: str) -> str:
    """MainPID and start time of each service of a host: they move only when the service restarts."""
    return host(name).check_output("systemctl show --property=Id,MainPID,ExecMainStartTimestampMonotonic "
                                   + " ".join(units(name)))


def sha256_of(name: str, path: str) -> str:
    return host(name).check_output(f"sha256sum {path}").split()[0]


# --------------------------------------------------- the assertion of the check step


PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: A file that should hold "converged"
      ansible.builtin.copy:
        dest: "{{ dest }}"
        content: "converged\\n"
        mode: "0644"
"""


@pytest.mark.parametrize("converged,check,rc", [(True, True, 0), (False, True, 3), (False, False, 0)],
                         ids=["check-converged", "check-would-change", "no-check"])
def test_check_exact_fails_a_check_run_with_changes(tmp_path, converged, check, rc):
    """What molecule's `check` step relies on: the callback ends a check run that would change anything."""
    dest = tmp_path / "file"
    if converged:
        dest.write_text("converged\n")
        dest.chmod(0o644)
    (tmp_path / "play.yml").write_text(PLAY)
    report = tmp_path / "report.json"
    env = check_env(report, allow_changes=False)
    env["ANSIBLE_CONFIG"] = str(tmp_path / "none.cfg")  # defaults, no lab inventory
    cmd = [ansible_playbook(), "-i", "localhost,", "-c", "local", "play.yml", "-e", f"dest={dest}",
           "-e", f"ansible_python_interpreter={sys.executable}"] + (["--check"] if check else [])
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == rc, proc.stdout + proc.stderr
    if rc:
        assert "check mode: 1 host(s) would change (localhost)" in proc.stderr
        assert 'localhost: A file that should hold "converged"' in proc.stderr
        assert re.search(r"^localhost\s+: ok=1\s+changed=1 ", proc.stdout, re.M)  # after the recap
        assert not dest.exists()
    if check:
        data = json.loads(report.read_text())
        assert data["hosts"]["localhost"]["changed"] == (0 if converged else 1)
    else:
        assert not report.exists() and dest.read_text() == "converged\n"


# ------------------------------------------------- hand edits, seen in check mode


def kubectl_on_cp(*args: str) -> str:
    return host(CP).check_output(" ".join(["/usr/local/bin/kubectl",
                                           "--kubeconfig=/etc/kubernetes/admin-local.kubeconfig",
                                           *map(shlex.quote, args)]))


def object_label() -> str:
    kind, name, label = OBJECT
    return kubectl_on_cp("get", kind, name, "-o", "jsonpath={.metadata.labels." + label.replace(".", "\\.") + "}")


@pytest.fixture(scope="module")
def edited_check(tmp_path_factory):
    """Edit two files and an object by hand, run site.yml --check --diff once, put them back; what was seen."""
    token = secrets.token_hex(8)
    edits = {PLAIN: f"# hand edit by test_check_mode {token}",
             SECRET: f"# hand edit by test_check_mode, secret {token}"}
    before = {}
    for name, path, _role, _handler in edits:
        h = host(name)
        before[name, path] = (int(h.check_output(f"stat -c %s {path}")), sha256_of(name, path),
                              h.check_output(f"stat -c '%i %a %U:%G' {path}"))
    label = object_label()
    starts = {name: service_starts(name) for name in HOSTS}
    report = tmp_path_factory.mktemp("check") / "report.json"
    cmd = [ansible_playbook(), "-i", inventory(), str(REPO / "playbooks" / "site.yml"), "--check", "--diff",
           "-e", f"cluster_dns_mode={dns_mode()}"]
    try:
        for (name, path, _role, _handler), line in edits.items():
            host(name).check_output(f"printf '%s\\n' {shlex.quote(line)} >> {path}")
        kubectl_on_cp("label", "--overwrite", OBJECT[0], OBJECT[1], f"{OBJECT[2]}=hand-edit-{token}")
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=check_env(report), capture_output=True, text=True,
                              timeout=900, check=False)
        seen = {
            "rc": proc.returncode,
            "output": ANSI.sub("", proc.stdout + proc.stderr),
            "seconds": time.monotonic() - started,
            "report": json.loads(report.read_text()) if report.exists() else None,
            "edited_after_check": {key: edits[key] in host(key[0]).file(key[1]).content_string for key in edits},
            "label_after_check": object_label(),
            "starts_before": starts,
            "starts_after": {name: service_starts(name) for name in HOSTS},
            "edits": edits,
            "token": token,
            "before": before,
            "label": label,
        }
    finally:
        for name, path, _role, _handler in edits:  # the edits only appended: truncate to the old size
            host(name).check_output(f"truncate -s {before[name, path][0]} {path}")
        kubectl_on_cp("label", "--overwrite", OBJECT[0], OBJECT[1], f"{OBJECT[2]}={label}")
    print(f"site.yml --check --diff took {seen['seconds']:.0f} s")  # shown with pytest -s
    yield seen


def changes_on(seen, name):
    return [c for c in seen["report"]["changes"] if c["host"] == name]


def test_check_run_succeeds(edited_check):
    assert edited_check["rc"] == 0, edited_check["output"][-6000:]
    assert edited_check["report"], "the check_exact callback wrote no report"


def test_recap_changed_only_on_the_edited_hosts(edited_check):
    recap = {m[0]: [int(v) for v in m[1:]] for m in RECAP.findall(edited_check["output"])}
    assert set(recap) == set(HOSTS), edited_check["output"][-3000:]
    # w1: kubelet config and its restart; cp1: encryption config, its restart, the RBAC object; the others
    # (w2, and cp2 and cp3 in the ha scenario): nothing
    expected = dict.fromkeys(HOSTS, 0) | {CP: 3, WORKERS[0]: 2}
    assert {name: counts[1] for name, counts in recap.items()} == expected
    assert all(counts[2] == 0 and counts[3] == 0 for counts in recap.values())
    hosts = edited_check["report"]["hosts"]
    assert {name: hosts[name]["changed"] for name in HOSTS} == expected


def test_exactly_the_edits_and_their_restarts(edited_check):
    """Every change the run reports, on every host: the edited files, their handlers, the edited object."""

    def what(change):
        if change["action"].endswith("install_files"):
            return (change["role"], tuple(change["files"]), tuple(change["directories"]))
        return (change["role"], "handler" if change["handler"] else "task", change["task"])

    def listed(changes):
        return sorted(changes, key=repr)

    seen = {name: listed(what(c) for c in changes_on(edited_check, name)) for name in HOSTS}
    assert seen == dict.fromkeys(HOSTS, []) | {
        WORKERS[0]: listed([(PLAIN[2], (PLAIN[1],), ()), (PLAIN[2], "handler", PLAIN[3])]),
        CP: listed([(SECRET[2], (SECRET[1],), ()), (SECRET[2], "handler", SECRET[3]),
                    ("kube_apiserver", "task", "Apply the RBAC that lets the API server reach kubelets")]),
    }


@pytest.mark.parametrize("edit", [PLAIN, SECRET], ids=["plain", "secret"])
def test_output_names_the_file_and_the_restart(edited_check, edit):
    _name, path, role, handler = edit
    out = edited_check["output"]
    assert f"RUNNING HANDLER [hardway.kubernetes.{role} : {handler}]" in out
    assert re.search(rf"^\+{re.escape(path)}: file, mode \d+, owner \S+, new content \(content\)$", out, re.M), \
        f"no summary line for {path}"


def test_diff_shows_the_plain_edit(edited_check):
    path = PLAIN[1]
    out = edited_check["output"]
    # the text diff of the kubelet config: the appended line would go
    assert f"--- before: {path}" in out and f"+++ after: {path}" in out
    assert f"\n-{edited_check['edits'][PLAIN]}\n" in out


def test_diff_never_shows_a_secret(edited_check):
    path = SECRET[1]
    out = edited_check["output"]
    key = (STATE / "encryption-key").read_text().strip()
    assert key and key not in out
    assert base64.b64encode(key.encode()).decode() not in out  # as it stands in the file
    for other in ("etcd-admin-password",):  # other secrets the controller keeps, where there are
        if (STATE / other).exists():
            assert (STATE / other).read_text().strip() not in out
    # neither the file's current (hand-edited) text nor its rendered one is shown
    assert edited_check["edits"][SECRET] not in out
    assert f"--- before: {path}" not in out and f"+++ after: {path}" not in out
    assert "EncryptionConfiguration" not in out and "aescbc" not in out
    # nor any private key or credential, from any task: no PEM header, no line of any key in the state dir
    for marker in ("PRIVATE KEY", "client-key-data", "client-certificate-data"):
        assert marker not in out
    key_lines = {line for pem in (STATE / "pki").glob("*-key.pem") for line in pem.read_text().splitlines()
                 if len(line) >= 40 and not line.startswith("-----")}
    assert key_lines and not [line for line in key_lines if line in out]


def test_check_run_changed_nothing(edited_check):
    assert all(edited_check["edited_after_check"].values()), "the check run changed an edited file"
    assert edited_check["label_after_check"] == f"hand-edit-{edited_check['token']}", "the check run applied RBAC"
    assert edited_check["starts_after"] == edited_check["starts_before"], "the check run restarted a service"


@pytest.mark.parametrize("edit", [PLAIN, SECRET], ids=["plain", "secret"])
def test_edited_file_is_back(edited_check, edit):
    name, path, _role, _handler = edit
    _size, digest, attributes = edited_check["before"][name, path]
    assert sha256_of(name, path) == digest
    assert host(name).check_output(f"stat -c '%i %a %U:%G' {path}") == attributes


def test_edited_object_is_back(edited_check):
    assert object_label() == edited_check["label"] == "hardway.kubernetes"
