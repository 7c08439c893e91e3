"""The upgrade playbook's logic: reading versions on a host (hardway.kubernetes.versions), the
version-skew rules over pairs of versions, and what is still to do on each host."""

from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.hardway.kubernetes.plugins.filter import upgrade as U
from ansible_collections.hardway.kubernetes.plugins.module_utils import versions as V


# ------------------------------------------------------------ reading versions
@pytest.mark.parametrize('text, version', [
    ('Kubernetes v1.37.1\n', '1.37.1'),
    ('etcd Version: 3.6.16\nGit SHA: 0\nGo Version: go1.25\n', '3.6.16'),
    ('containerd github.com/containerd/containerd/v2 v2.3.7 0123abc\n', '2.3.7'),
    ('runc version 1.4.3\ncommit: v1.4.3-0\nspec: 1.2.1\n', '1.4.3'),
    ('v0.28.4\n', '0.28.4'),
    ('Client Version: v1.36.5\nKustomize Version: v5.7.1\n', '1.36.5'),
    ('no version here', None),
    ('', None),
])
def test_parse_version_takes_the_first_x_y_z(text, version):
    assert V.parse_version(text) == version


def test_binary_versions_reads_installed_binaries_and_leaves_out_missing_ones(tmp_path):
    for name in ('kubelet', 'containerd', 'runc'):
        (tmp_path / name).write_text('')
    answers = {'kubelet': (0, 'Kubernetes v1.36.5\n', ''), 'containerd': (0, 'containerd x v2.3.7 abc\n', ''),
               'runc': (1, '', 'runc: permission denied')}

    def run(argv):
        return answers[argv[0].rsplit('/', 1)[1]]
    found, problems = V.binary_versions(str(tmp_path), ['kubelet', 'containerd', 'runc', 'etcd', 'nope'], run)
    assert found == {'kubelet': '1.36.5', 'containerd': '2.3.7'}
    assert 'exit 1' in problems['runc'] and 'permission denied' in problems['runc']
    assert 'unknown binary' in problems['nope'] and 'etcd' not in problems


def _node(name, version, annotations=None):
    return {'metadata': {'name': name, 'annotations': annotations or {}},
            'status': {'nodeInfo': {'kubeletVersion': 'v' + version}}}


def test_api_versions_reads_the_server_the_kubelets_and_the_marked_nodes():
    def run(argv):
        if 'version' in argv:
            return 0, json.dumps({'serverVersion': {'gitVersion': 'v1.37.1'}}), ''
        return 0, json.dumps({'items': [_node('w1', '1.36.5', {'hardway.kubernetes/upgrade': 'cordoned'}),
                                        _node('w2', '1.37.1')]}), ''
    got = V.api_versions('kubectl', '/k', run, 'hardway.kubernetes/upgrade')
    assert got == {'server': '1.37.1', 'nodes': {'w1': '1.36.5', 'w2': '1.37.1'}, 'marked': ['w1'], 'problem': None}


def test_api_versions_says_why_when_the_api_server_does_not_answer():
    got = V.api_versions('kubectl', '/k', lambda argv: (1, '', 'connection refused'))
    assert got['server'] is None and 'connection refused' in got['problem']


def test_stale_units_finds_processes_running_a_deleted_binary():
    out = 'Id=etcd.service\nMainPID=10\n\nId=kubelet.service\nMainPID=11\n\nId=kube-proxy.service\nMainPID=0\n'
    links = {'/proc/10/exe': '/usr/local/bin/etcd', '/proc/11/exe': '/usr/local/bin/kubelet (deleted)'}
    got = V.stale_units(['etcd', 'kubelet', 'kube-proxy'], lambda argv: (0, out, ''), links.__getitem__)
    assert got == ['kubelet']
    assert V.stale_units([], None) == []


# ---------------------------------------------------------------- skew rules
def record(host, target, binaries=None, control_plane=False, etcd=False, nodes=False, api=None, stale=None,
           etcd_target='3.6.16'):
    return {'host': host, 'node': host, 'control_plane': control_plane, 'etcd': etcd, 'nodes': nodes,
            'target': {'kubernetes': target, 'etcd': etcd_target}, 'binaries': binaries or {},
            'stale': stale or [], 'api': api or {}}


def plane(host, target, running, api_nodes=None, **kw):
    binaries = {'kube-apiserver': running, 'kube-controller-manager': running, 'kube-scheduler': running}
    binaries.update(kw.pop('binaries', {}))
    return record(host, target, binaries, control_plane=True,
                  api={'server': running, 'nodes': api_nodes or {}, 'marked': []}, **kw)


def worker(host, target, running):
    return record(host, target, {'kubelet': running, 'kube-proxy': running}, nodes=True)


# (running version, pinned version, refused?) for one control plane and one worker moving together
@pytest.mark.parametrize('running, target, why', [
    ('1.36.5', '1.37.1', None),            # one minor up
    ('1.37.0', '1.37.1', None),            # a patch up
    ('1.37.1', '1.37.0', None),            # a patch down
    ('1.37.1', '1.37.1', None),            # nothing to do
    ('1.35.9', '1.37.1', 'skips a minor'),
    ('1.37.1', '1.36.5', 'goes down a minor'),
    ('1.37.1', '2.0.0', 'skips a minor'),
])
def test_skew_rules_over_version_pairs(running, target, why):
    problems = U.skew_problems([plane('cp1', target, running), worker('w1', target, running)])
    if why is None:
        assert problems == []
    else:
        assert any(why in p for p in problems)
        assert any(p.startswith(f'cp1: kube-apiserver runs {running}') and target in p for p in problems)


@pytest.mark.parametrize('worker_target, why', [
    ('1.37.1', 'newer than the API server of cp1'),
    ('1.32.0', 'more than 3 minor versions older'),
    ('1.33.0', None),
    ('1.36.0', None),
])
def test_a_kubelet_is_never_newer_than_an_api_server_and_at_most_three_minors_older(worker_target, why):
    records = [plane('cp1', '1.36.5', '1.36.5'), worker('w1', worker_target, worker_target)]
    problems = U.skew_problems(records)
    if why is None:
        assert problems == []
    else:
        assert any(p.startswith(f'w1: its kubelet would be {worker_target}') and why in p for p in problems)


def test_a_worker_pinned_newer_by_a_host_variable_is_refused_naming_it_and_both_versions():
    records = [plane('cp1', '1.36.5', '1.36.5'), worker('w1', '1.36.5', '1.36.5'), worker('w2', '1.37.1', '1.36.5')]
    problems = U.skew_problems(records)
    assert problems == ['w2: its kubelet would be 1.37.1, newer than the API server of cp1 (1.36.5): a kubelet may '
                        'not be newer than any API server']


def test_the_control_plane_may_not_be_pinned_older_than_a_running_kubelet():
    # the API reports w1's kubelet at 1.37.1 although its binary on disk says otherwise
    records = [plane('cp1', '1.36.5', '1.36.5', api_nodes={'w1': '1.37.1'}), worker('w1', '1.36.5', '1.36.5')]
    problems = U.skew_problems(records)
    assert any('its kubelet runs 1.37.1' in p and 'control plane may not be older than the nodes' in p
               for p in problems)


def test_nodes_left_more_than_three_minors_behind_the_new_control_plane_are_refused():
    records = [plane('cp1', '1.37.1', '1.36.5'), worker('w1', '1.37.1', '1.33.2')]
    problems = U.skew_problems(records)
    assert any(p.startswith('w1: kubelet runs 1.33.2') and 'skips a minor' in p for p in problems)
    assert any('more than 3 minor versions behind' in p for p in problems)


def test_api_servers_may_differ_by_one_minor_at_most():
    records = [plane('cp1', '1.37.1', '1.36.5'), plane('cp2', '1.35.9', '1.35.9'),
               worker('w1', '1.35.9', '1.35.9')]
    assert any('API servers may differ by one minor version at most' in p for p in U.skew_problems(records))


@pytest.mark.parametrize('running, target, why', [
    ('3.6.15', '3.6.16', None),
    ('3.5.21', '3.6.16', None),
    ('3.6.16', '3.5.21', 'goes down a minor'),
    ('3.4.30', '3.6.16', 'skips a minor'),
])
def test_etcd_moves_one_minor_at_a_time(running, target, why):
    records = [record('e1', '1.37.1', {'etcd': running}, etcd=True, etcd_target=target)]
    problems = U.skew_problems(records)
    assert (problems == []) if why is None else any(p.startswith('e1: etcd runs') and why in p for p in problems)


def test_version_tuple_refuses_what_is_not_a_version():
    assert U.version_tuple('v1.37.1') == (1, 37, 1)
    assert U.version_tuple('1.37.1-rc.1') == (1, 37, 1)
    with pytest.raises(AnsibleFilterError, match='not a version'):
        U.version_tuple('latest')


# ------------------------------------------------------------ what is to do
def test_pending_names_binaries_off_their_pins_stale_services_and_marked_nodes():
    cp = plane('cp1', '1.37.1', '1.37.1', api_nodes={'w1': '1.36.5', 'w2': '1.37.1', 'w3': '1.37.1'},
               binaries={'etcd': '3.6.16'})
    cp['api']['marked'] = ['w3']
    w4 = record('w4', '1.37.1', {'kubelet': '1.37.1'}, nodes=True, stale=['kubelet'])
    records = [cp, worker('w1', '1.37.1', '1.37.1'), worker('w2', '1.37.1', '1.36.5'),
               worker('w3', '1.37.1', '1.37.1'), w4]
    pending = U.upgrade_pending(records)
    assert 'cp1' not in pending
    assert pending['w1'] == ['kubelet reports 1.36.5 to the API, pinned 1.37.1']
    assert pending['w2'] == ['kubelet 1.36.5 -> 1.37.1', 'kube-proxy 1.36.5 -> 1.37.1']
    assert pending['w3'] == ['left cordoned by an interrupted upgrade (uncordon)']
    assert pending['w4'] == ['kubelet runs a replaced binary (restart)']


def test_an_up_to_date_cluster_has_nothing_pending():
    records = [plane('cp1', '1.37.1', '1.37.1', api_nodes={'w1': '1.37.1'}), worker('w1', '1.37.1', '1.37.1')]
    assert U.upgrade_pending(records) == {}


class HostVars(dict):
    pass


def test_upgrade_records_reads_pins_roles_and_what_was_read():
    hostvars = HostVars(cp1={'_upgrade_self': {'node': 'cp1', 'control_plane': True, 'etcd': True, 'nodes': False,
                                               'target': {'kubernetes': '1.37.1'}},
                             '_upgrade_running': {'binaries': {'etcd': '3.6.16'}, 'stale': [], 'api': {}}},
                        w1={'_upgrade_self': {'node': 'node-1', 'nodes': True, 'target': {'kubernetes': '1.37.1'}},
                            '_upgrade_running': {'binaries': {}}})
    got = U.upgrade_records(['cp1', 'w1'], hostvars)
    assert got[0]['control_plane'] and got[0]['etcd'] and not got[0]['nodes']
    assert got[1]['node'] == 'node-1' and got[1]['nodes'] and got[1]['stale'] == []
    with pytest.raises(AnsibleFilterError, match='no versions were read on w2'):
        U.upgrade_records(['w2'], HostVars(w2={}))


# ------------------------------------------------------------ certificates
def _pem(common_name, days, issuer=None):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or common_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def test_certificates_are_found_in_pem_files_bundles_and_kubeconfigs_and_keys_are_left_alone(tmp_path):
    import base64

    from ansible_collections.hardway.kubernetes.plugins.module_utils import certinfo as C

    ca = _pem("kubernetes-ca", 3650)[0]
    old_ca = _pem("kubernetes-ca-old", 10)[0]
    leaf, key = _pem("system:node:w1", 20, issuer="kubernetes-ca")
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_text(ca + old_ca)           # a bundle of two
    (tmp_path / "pki" / "w1.pem").write_text(leaf)
    (tmp_path / "pki" / "w1-key.pem").write_text(key)
    (tmp_path / "pki" / "notes.txt").write_text(leaf)                # not a certificate file name
    ca64, leaf64, key64 = (base64.b64encode(x.encode()).decode() for x in (ca, leaf, key))
    (tmp_path / "kubelet.kubeconfig").write_text(
        f"clusters:\n- cluster:\n    certificate-authority-data: {ca64}\n    server: https://127.0.0.1:6444\n"
        f"users:\n- user:\n    client-certificate-data: {leaf64}\n    client-key-data: {key64}\n")
    found, problems = C.collect([str(tmp_path)])
    assert problems == []
    by_source = {c["source"].replace(str(tmp_path), ""): c for c in found}
    assert sorted(by_source) == ["/kubelet.kubeconfig:certificate-authority-data",
                                 "/kubelet.kubeconfig:client-certificate-data",
                                 "/pki/ca.pem", "/pki/ca.pem#1", "/pki/w1.pem"]
    assert by_source["/pki/w1.pem"]["subject"] == "CN=system:node:w1"
    assert by_source["/pki/w1.pem"]["issuer"] == "CN=kubernetes-ca"
    assert by_source["/pki/w1.pem"]["days_left"] in (19, 20)
    assert by_source["/pki/ca.pem#1"]["subject"] == "CN=kubernetes-ca-old"
    lines = U.certificate_lines(found)
    assert lines[0].split()[0] in ("9", "10") and lines[0].endswith("/pki/ca.pem#1")
    assert "(issuer CN=kubernetes-ca)" in lines[1]


def test_an_unreadable_certificate_is_reported_not_fatal(tmp_path):
    from ansible_collections.hardway.kubernetes.plugins.module_utils import certinfo as C

    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    found, problems = C.collect([str(tmp_path)])
    assert found == [] and "not a readable certificate" in problems[0]
