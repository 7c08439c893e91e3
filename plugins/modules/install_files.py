#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_files
short_description: Copy many files from the controller to a host in one task
description:
  - Installs a list of files from the controller on the host, each with its own destination, mode,
    owner and group, at the cost of about two module runs per host whatever the number of files,
    where a loop of M(ansible.builtin.copy) costs several per file.
  - The action plugin computes the sha256 of every source on the controller, asks the host in one
    module run which destinations are missing or differ (content, mode, owner or group), transfers
    only the sources whose content differs, and installs them with a second module run, which also
    fixes mode, owner and group. When everything is up to date only the first run happens.
  - The digest of a source bigger than 1 MiB is cached in a sidecar file C(<src>.sha256cache) next
    to it (C(<mtime_ns> <size> <hexdigest>)), trusted while the source's modification time and size
    are unchanged, so that big binaries are not hashed again on every run. A source that cannot get
    a sidecar (read-only directory) is hashed every time.
  - Changed files of at most 1 MiB travel together in one archive, bigger files one by one, into a
    temporary directory on the host that is removed at the end of the task.
  - Every transferred file is verified against the controller's sha256 before it replaces the
    destination. It is written to a temporary file in the destination's directory, given its
    owner, group and mode, and renamed over the destination, so that the destination is at any
    moment either the old or the new file, and a private key is never readable by others. Missing
    parent directories are created with mode C(0755).
  - File contents never appear in the result or the diff, so the module is safe for private keys.
  - The module part runs on the host with the Python standard library only. It is meant to be used
    through the action plugin of the same name (which is what a task C(hardway.kubernetes.install_files)
    does); O(phase), O(bundle) and the suboptions O(files[].sha256) and O(files[].tmp_src) are set
    by the action plugin and cannot be given in a task.
author:
  - hardway.kubernetes developers (@hardway)
options:
  files:
    description:
      - The files to install.
    type: list
    elements: dict
    required: true
    suboptions:
      src:
        description:
          - Path of the file on the controller. A relative path is searched like
            O(ansible.builtin.copy#module:src) (the role's C(files) directory, then the playbook's).
          - A source listed for several destinations is hashed and transferred once.
          - Handled by the action plugin; the module only uses it in messages.
        type: str
        required: true
      dest:
        description:
          - Absolute path of the file on the host. An existing symbolic link or other non-regular
            file there is replaced by a regular file; a directory is an error.
          - Two items cannot have the same O(files[].dest).
        type: path
        required: true
      mode:
        description:
          - Permission bits, as an octal string such as V("0644") (quote it in YAML).
        type: raw
        required: true
      owner:
        description:
          - User name owning the file. A number that is no user name is taken as a uid.
        type: str
        default: root
      group:
        description:
          - Group name of the file. A number that is no group name is taken as a gid.
        type: str
        default: root
      sha256:
        description:
          - Internal, set by the action plugin from O(files[].src) and rejected in a task. The sha256
            of the source, in hexadecimal.
        type: str
      tmp_src:
        description:
          - Internal, set by the action plugin and rejected in a task. The transferred copy of the
            source on the host, for a file whose content differs.
        type: path
  phase:
    description:
      - Internal, set by the action plugin and rejected in a task.
      - V(inspect) compares every destination with its O(files[].sha256), mode, owner and group
        and changes nothing. V(apply) installs the items with a O(files[].tmp_src) and fixes mode,
        owner and group of the others.
    type: str
    choices: [inspect, apply]
    default: inspect
  bundle:
    description:
      - Internal, set by the action plugin and rejected in a task. A tar archive of transferred
        files, unpacked next to itself before O(phase=apply) installs them.
    type: path
attributes:
  action:
    support: full
    description: The action plugin hashes, compares and transfers; the module inspects and installs.
  async:
    support: none
    description: The action plugin runs two module steps with transfers in between; it cannot run in the background.
  check_mode:
    support: full
    description: Compares the files and reports what would change and why, without transferring anything.
  diff_mode:
    support: full
    description:
      - A before/after listing of the destinations that change (state, mode, owner, group), never
        their contents.
  platform:
    support: full
    platforms: posix
    description: Hosts with a POSIX file system and user database (owners and groups by name).
notes:
  - Owners and groups are resolved on the host when the task runs. In check mode an unknown user or
    group only causes a warning and an owner difference, since an earlier task that would create it
    did not run.
  - Add C(*.sha256cache) to the C(.gitignore) of a repository holding big source files.
seealso:
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: Kubernetes binaries and node credentials
  hardway.kubernetes.install_files:
    files:
      - src: "{{ cache_dir }}/kubelet"
        dest: /usr/local/bin/kubelet
        mode: "0755"
      - src: "{{ cache_dir }}/kube-proxy"
        dest: /usr/local/bin/kube-proxy
        mode: "0755"
      - src: "{{ pki_dir }}/{{ inventory_hostname }}-key.pem"
        dest: /var/lib/kubelet/kubelet-key.pem
        mode: "0600"
      - src: "{{ pki_dir }}/ca.pem"
        dest: /var/lib/kubernetes/ca.pem
        mode: "0644"
  register: installed
  notify: Restart kubelet

- name: Show what changed, and why
  ansible.builtin.debug:
    msg: "{{ item.dest }}: {{ item.reason }}"
  loop: "{{ installed.files | selectattr('changed') }}"
"""

RETURN = r"""
files:
  description: Outcome per item of O(files), in the same order.
  returned: always
  type: list
  elements: dict
  sample:
    - dest: /usr/local/bin/kubelet
      src: /home/me/.cache/kubernetes/kubelet
      changed: true
      reason: content
      reasons: [content]
    - dest: /var/lib/kubelet/kubelet-key.pem
      src: /srv/pki/w1-key.pem
      changed: true
      reason: mode
      reasons: [mode, owner]
    - dest: /var/lib/kubernetes/ca.pem
      src: /srv/pki/ca.pem
      changed: false
      reason: up to date
      reasons: []
  contains:
    dest:
      description: Destination on the host.
      type: str
    src:
      description: Source on the controller, as found.
      type: str
    changed:
      description: Whether the file changed (or would change, in check mode).
      type: bool
    reason:
      description:
        - The first of RV(files[].reasons), or V(up to date).
      type: str
    reasons:
      description:
        - Every difference found, in this order. V(missing) (no file there), V(content) (another
          sha256, or not a regular file), V(mode), V(owner) (owner or group). V(missing) comes
          alone. A file whose content is replaced gets the requested mode, owner and group with it.
      type: list
      elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (  # noqa: E402
    InstallError,
    describe_error,
    fix_attributes,
    inspect_file,
    install_file,
    lookup_group,
    lookup_user,
    normalize_files,
    unpack_bundle,
)


def argument_spec():
    return {
        'files': {
            'type': 'list', 'elements': 'dict', 'required': True,
            'options': {
                'src': {'type': 'str', 'required': True},
                'dest': {'type': 'path', 'required': True},
                'mode': {'type': 'raw', 'required': True},
                'owner': {'type': 'str', 'default': 'root'},
                'group': {'type': 'str', 'default': 'root'},
                'sha256': {'type': 'str'},
                'tmp_src': {'type': 'path'},
            },
        },
        'phase': {'type': 'str', 'choices': ['inspect', 'apply'], 'default': 'inspect'},
        'bundle': {'type': 'path'},
    }


def resolve_ids(module, specs, tolerate_unknown):
    """Return {index: (uid, gid)}; unknown names fail, or with ``tolerate_unknown`` warn and give None."""
    ids = {}
    for spec in specs:
        uid, gid = lookup_user(spec['owner']), lookup_group(spec['group'])
        for value, kind, name in ((uid, 'user', spec['owner']), (gid, 'group', spec['group'])):
            if value is None:
                msg = '%s: no such %s on the host: %s' % (spec['label'], kind, name)
                if not tolerate_unknown:
                    module.fail_json(msg=msg)
                module.warn(msg)
        ids[spec['index']] = (uid, gid)
    return ids


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    inspect_only = params['phase'] == 'inspect' or module.check_mode
    try:
        specs = normalize_files(params['files'], require_sha256=inspect_only)
    except InstallError as exc:
        module.fail_json(msg=str(exc))
    ids = resolve_ids(module, specs, tolerate_unknown=module.check_mode)

    if inspect_only:
        results = []
        for spec in specs:
            try:
                results.append(inspect_file(spec, *ids[spec['index']]))
            except InstallError as exc:
                module.fail_json(msg=str(exc))
            except OSError as exc:
                module.fail_json(msg='%s: %s' % (spec['label'], describe_error(exc)))
        module.exit_json(changed=any(item['reasons'] for item in results), files=results)

    if params['bundle']:
        try:
            unpack_bundle(params['bundle'])
        except (InstallError, OSError) as exc:
            module.fail_json(msg='cannot unpack the transferred files: %s' % describe_error(exc))
    last_use = {spec['tmp_src']: spec['index'] for spec in specs if spec['tmp_src']}
    results = []
    try:
        for spec in specs:
            uid, gid = ids[spec['index']]
            if spec['tmp_src']:
                if not spec['sha256']:
                    raise InstallError('%s: tmp_src without sha256' % spec['label'])
                created = install_file(spec, uid, gid, consume=last_use[spec['tmp_src']] == spec['index'])
                results.append({'dest': spec['dest'], 'installed': True, 'fixed': [], 'created_dirs': created})
            else:
                fixed = fix_attributes(spec, uid, gid)
                results.append({'dest': spec['dest'], 'installed': False, 'fixed': fixed, 'created_dirs': []})
    except InstallError as exc:
        module.fail_json(msg=str(exc), files=results)
    except OSError as exc:
        module.fail_json(msg='%s: %s' % (specs[len(results)]['label'], describe_error(exc)), files=results)
    module.exit_json(changed=any(item['installed'] or item['fixed'] for item in results), files=results)


if __name__ == '__main__':
    main()
