# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""flannel's network config in etcd (flannel_network): written by one host, awaited by every node.

The writer (the first etcd host) checks the config against flannel's rules
and refuses to change the config of a live network without ``force``
(flannel_config.plan_network_config). Each node, before it restarts flanneld
for a changed config, waits until etcd holds that config, so that flanneld
never restarts into the old one; it fails at once when the writer would
refuse the change, instead of waiting for a write that never comes.

Standard library only, Python 3.8+.
"""

from __future__ import annotations

import time

from ansible_collections.hardway.kubernetes.plugins.module_utils.etcd import EtcdError, encode_value, pretty
from ansible_collections.hardway.kubernetes.plugins.module_utils.flannel_config import (
    NetworkConfigError,
    network_config_problems,
    plan_network_config,
)


def config_key(prefix):
    """The key flanneld reads its network config from: ``<prefix>/config``."""
    return prefix.rstrip('/') + '/config'


def leases_prefix(prefix):
    """Where flanneld keeps its node subnet leases: ``<prefix>/subnets/``."""
    return prefix.rstrip('/') + '/subnets/'


def _read(client, prefix, config, force):
    """``(current, leases, write, fields)``; raises NetworkConfigError as the writer would."""
    key = config_key(prefix)
    current = client.get(key)
    leases = 0
    if current is not None:
        leases = client.count(leases_prefix(prefix))
    write, fields = plan_network_config(key, current, config, force, leases)
    return current, leases, write, fields


def run_network(make_client, prefix, config, force=False, write=True, wait=0.0, check_mode=False, diff=False,
                sleep=None, clock=None):
    """The flannel_network module's work. ``make_client()`` returns an EtcdClient (made again for each
    attempt while waiting, so that a password made meanwhile is used). Raises NetworkConfigError, EtcdError."""
    sleep = sleep or time.sleep
    clock = clock or time.monotonic
    key = config_key(prefix)
    problems = network_config_problems(config)
    if problems:  # before any connection, also in check mode
        raise NetworkConfigError('refusing to write %s, it breaks flannel\'s rules: %s' % (key, '; '.join(problems)),
                                 problems)
    deadline = clock() + wait
    while True:
        client = make_client()
        try:
            current, leases, needed, fields = _read(client, prefix, config, force)
        except EtcdError:
            if write or clock() >= deadline:
                raise
            sleep(3)  # etcd not up yet, or its users not made yet: the writer's run is still on its way
            continue
        if write or not needed or check_mode or clock() >= deadline:
            break
        sleep(3)
    result = {'changed': False, 'key': key, 'previous': current, 'leases': leases, 'changed_fields': fields,
              'endpoint': client.endpoint_url, 'value': current}
    if not write:
        if needed and not check_mode:
            raise NetworkConfigError(
                'etcd does not hold the flannel network config this run writes into %s after %s seconds (it holds '
                '%s): the first etcd host writes it, see its error' % (key, wait, current or 'no config'))
        result['pending'] = needed  # in check mode: what the writer would write first
        return result
    if not needed:
        return result
    stored = encode_value(config)
    result.update(changed=True, value=stored)
    if diff:
        result['diff'] = {'before': pretty(current), 'after': pretty(stored), 'before_header': 'etcd key %s' % key,
                          'after_header': 'etcd key %s' % key}
    if not check_mode:
        client.put(key, stored)
    return result
