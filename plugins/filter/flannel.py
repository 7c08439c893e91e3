# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""flannel's network config from the cluster's settings (the logic is in module_utils/flannel_config.py,
which the flannel_network module and preflight use too).

- ``flannel_network_config(network, subnet_len, backend, overrides)``: the config flanneld reads from
  ``<prefix>/config``.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.hardway.kubernetes.plugins.module_utils.flannel_config import network_config


def flannel_network_config(network, subnet_len, backend, overrides=None):
    """``{'Network': network, 'SubnetLen': subnet_len, 'Backend': backend with overrides merged}``."""
    for name, value in (('backend', backend), ('overrides', overrides)):
        if value is not None and not isinstance(value, dict):
            raise AnsibleFilterError('hardway.kubernetes.flannel_network_config: %s must be a dict, got %s'
                                     % (name, type(value).__name__))
    return network_config(network, subnet_len, backend, overrides)


class FilterModule:
    """hardway.kubernetes flannel filters."""

    def filters(self):
        return {'flannel_network_config': flannel_network_config}
