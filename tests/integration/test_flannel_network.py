"""hardway.kubernetes.flannel_network against a real etcd: the write, the guard on a live network, the wait."""

from __future__ import annotations

import json

CONFIG = {'Network': '10.200.0.0/16', 'SubnetLen': 24, 'Backend': {'Type': 'vxlan', 'VNI': 1, 'Port': 8472}}


def args(etcd, cert_args, prefix, **extra):
    out = {'endpoints': [etcd['url']], 'prefix': prefix}
    out.update(cert_args())
    out.update(extra)
    return out


def stored(module, etcd, cert_args, key):
    result = module('etcd_key', dict(cert_args(), endpoints=[etcd['url']], key=key, state='get'))
    return result['value_json']


def test_write_guard_and_force(module, etcd, cert_args):
    prefix = '/it/flannel-guard'
    result = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG), diff=True)
    assert result['rc'] == 0 and result['changed'] and result['key'] == prefix + '/config', result
    assert stored(module, etcd, cert_args, prefix + '/config') == CONFIG
    again = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG))
    assert again['changed'] is False and again['leases'] == 0
    # no flanneld has leased a subnet yet: a change needs no force
    port = dict(CONFIG, Backend=dict(CONFIG['Backend'], Port=8473))
    assert module('flannel_network', args(etcd, cert_args, prefix, config=port))['changed']
    # a node's lease makes the network live
    lease = json.dumps({'PublicIP': '10.0.0.21', 'BackendType': 'vxlan'})
    module('etcd_key', dict(cert_args(), endpoints=[etcd['url']], key=prefix + '/subnets/10.200.1.0-24', value=lease))
    for check in (True, False):
        refused = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG), check=check)
        assert refused['failed'] and refused['rc'] == 1, refused
        assert 'the backend is vxlan (Port 8473, VNI 1) and would become vxlan (Port 8472, VNI 1)' in refused['msg']
        assert '(1 node lease)' in refused['msg'] and 'force: true' in refused['msg']
    assert stored(module, etcd, cert_args, prefix + '/config') == port
    # the wait fails at once, as the writer would
    waited = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG, write=False, wait=60))
    assert waited['failed'] and 'refusing to change' in waited['msg']
    forced = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG, force=True), diff=True)
    assert forced['changed'] and forced['changed_fields'] == ['Backend.Port'] and forced['leases'] == 1
    assert '"Port": 8473' in forced['diff']['before'] and '"Port": 8472' in forced['diff']['after']
    assert stored(module, etcd, cert_args, prefix + '/config') == CONFIG
    waited = module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG, write=False, wait=60))
    assert waited['rc'] == 0 and waited['changed'] is False and waited['pending'] is False


def test_wait_for_the_writer(module, background_module, etcd, cert_args):
    prefix = '/it/flannel-wait'
    waiting = background_module('flannel_network',
                                args(etcd, cert_args, prefix, config=CONFIG, write=False, wait=60))
    assert waiting.running()
    assert module('flannel_network', args(etcd, cert_args, prefix, config=CONFIG))['changed']
    result = waiting.result(timeout=30)
    assert result['rc'] == 0 and result['pending'] is False and result['value'] is not None, result


def test_through_ansible_on_an_old_python(ansible_adhoc, old_python, etcd, cert_args):
    prefix = '/it/flannel-ansible'
    rc, result = ansible_adhoc('flannel_network', args(etcd, cert_args, prefix, config=CONFIG), python=old_python)
    assert rc == 0 and result['changed'] is True, result
    rc, result = ansible_adhoc('flannel_network', args(etcd, cert_args, prefix, config=CONFIG), python=old_python)
    assert rc == 0 and result['changed'] is False, result
