#!/usr/bin/python
# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: install_files
short_description: Install many files and directories on a host in one task
description:
  - Installs a list of files on the host, each from a controller file or from content given in the
    task (such as a rendered template), with its own destination, mode, owner and group, and makes
    sure a list of directories exists with their own mode, owner and group. It costs about two
    module runs per host whatever the number of items, where a loop of M(ansible.builtin.copy),
    M(ansible.builtin.template) or M(ansible.builtin.file) costs one or more per item.
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
  - The contents of files given by O(files[].src) never appear in the result or the diff, so the
    module is safe for private keys. A file given by O(files[].content) shows as a text diff in diff
    mode, unless its O(files[].diff) is V(false).
  - A file may also come from a URL that the host downloads for itself (O(files[].url)). The
    download is verified against O(files[].url_sha256) before anything of it is installed, and it is
    either the file itself or a tar archive holding it (O(files[].member)). Nothing of such a file
    passes through the controller. An archive is downloaded once per module run whatever the number
    of its members installed, into C(/var/cache/hardway/downloads), and deleted at the end of the run.
    The content digest of each member is kept in O(digest_cache), so a later run compares the installed
    file without downloading anything.
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
    default: []
    suboptions:
      src:
        description:
          - Path of the file on the controller. A relative path is searched like
            O(ansible.builtin.copy#module:src) (the role's C(files) directory, then the playbook's).
          - A source listed for several destinations is hashed and transferred once.
          - Handled by the action plugin; the module only uses it in messages.
          - Exactly one of O(files[].src), O(files[].content) and O(files[].url) is required.
        type: str
      url:
        description:
          - An C(http://) or C(https://) URL the host downloads the file from (or, with
            O(files[].member), the tar archive holding it). The host must reach it; the controller
            never does.
        type: str
      url_sha256:
        description:
          - The sha256 of what O(files[].url) serves, in hexadecimal; required with O(files[].url). A
            download with another digest fails and installs nothing.
        type: str
      member:
        description:
          - With O(files[].url) naming a tar archive (gzip-compressed or not), the path of the file
            inside it, such as C(etcd-v3.6.16-linux-amd64/etcd).
        type: str
      content:
        description:
          - The text of the file, written as UTF-8; for example
            C("{{ lookup('ansible.builtin.template', 'unit.service.j2') }}").
          - Handled by the action plugin, which hashes it and transfers it like a source file when
            it differs; the module never receives it.
        type: str
      diff:
        description:
          - For an item with O(files[].content), whether diff mode shows its old and new text (up to
            256 KiB of UTF-8). Set V(false) for content that holds a secret.
          - Items with O(files[].src) are only ever listed, never shown.
        type: bool
        default: true
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
      fetch:
        description:
          - Internal, set by the action plugin and rejected in a task. Whether the host downloads
            O(files[].url) in this run, for a file whose content differs.
        type: bool
        default: false
      text_diff:
        description:
          - Internal, set by the action plugin and rejected in a task. Whether the inspection returns
            the current text of the file when its content differs, for the diff.
        type: bool
        default: false
  directories:
    description:
      - Directories to create or fix before the files are installed (so that a file can go into a
        directory with mode C(0700)). Missing parents are created with mode C(0755).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description:
          - Absolute path of the directory. Anything else at that path is an error.
        type: path
        required: true
      mode:
        description:
          - Permission bits, as an octal string such as V("0700") (quote it in YAML).
        type: raw
        required: true
      owner:
        description:
          - User name owning the directory.
        type: str
        default: root
      group:
        description:
          - Group name of the directory.
        type: str
        default: root
  digest_cache:
    description:
      - A file on the host where the module keeps the sha256 of every destination bigger than 1 MiB,
        with the inode, size, modification and change time it was computed for. While those are
        unchanged the digest is trusted instead of reading the file again, which saves seconds of
        CPU per host and run for the Kubernetes binaries. Any write to the file, or its
        replacement, changes one of them, and the change time cannot be set back by a user.
      - Not written in check mode. Deleting it only costs one full comparison.
      - An empty string turns the cache off, so every destination is read and hashed.
    type: str
    default: /var/cache/hardway/install_files-digests.json
  download_timeout:
    description:
      - Seconds a download from O(files[].url) may wait for the server before it fails.
    type: int
    default: 60
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
      - A before/after listing of the destinations that change (state, mode, owner, group), then the
        old and new text of each changed file given by O(files[].content), unless its O(files[].diff)
        is V(false). The contents of files given by O(files[].src) are never shown.
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

- name: Configuration of a service, rendered from templates, in a directory only root can read
  hardway.kubernetes.install_files:
    directories:
      - path: /var/lib/kubelet
        mode: "0700"
    files:
      - content: "{{ lookup('ansible.builtin.template', 'config.yaml.j2') }}"
        dest: /var/lib/kubelet/config.yaml
        mode: "0644"
      - content: "{{ lookup('ansible.builtin.template', 'kubelet.service.j2') }}"
        dest: /etc/systemd/system/kubelet.service
        mode: "0644"
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
      description: Source on the controller, as found; V(null) for an item given by O(files[].content).
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
directories:
  description: Outcome per item of O(directories), in the same order.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/lib/kubelet
      changed: true
      reason: missing
      reasons: [missing]
  contains:
    path:
      description: The directory.
      type: str
    changed:
      description: Whether it was created or fixed (or would be, in check mode).
      type: bool
    reason:
      description: The first of RV(directories[].reasons), or V(up to date).
      type: str
    reasons:
      description: V(missing), or the differences found among V(mode) and V(owner) (owner or group).
      type: list
      elements: str
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.hardway.kubernetes.plugins.module_utils.downloads import (  # noqa: E402
    Downloader,
    install_from_url,
    url_opener,
    resolve_members,
)

from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (  # noqa: E402
    DIGEST_CACHE,
    DigestCache,
    InstallError,
    describe_error,
    directory_options,
    ensure_directory,
    fix_attributes,
    inspect_directory,
    inspect_file,
    install_file,
    lookup_group,
    lookup_user,
    normalize_directories,
    normalize_files,
    unpack_bundle,
)


def argument_spec():
    return {
        'files': {
            'type': 'list', 'elements': 'dict', 'default': [],
            'options': {
                'src': {'type': 'str'},
                'content': {'type': 'str'},  # the action plugin's; never sent to the module
                'diff': {'type': 'bool', 'default': True},  # the action plugin's
                'dest': {'type': 'path', 'required': True},
                'mode': {'type': 'raw', 'required': True},
                'owner': {'type': 'str', 'default': 'root'},
                'group': {'type': 'str', 'default': 'root'},
                'sha256': {'type': 'str'},
                'tmp_src': {'type': 'path'},
                'text_diff': {'type': 'bool', 'default': False},
                'url': {'type': 'str'},
                'url_sha256': {'type': 'str'},
                'member': {'type': 'str'},
                'fetch': {'type': 'bool', 'default': False},
            },
        },
        'directories': {'type': 'list', 'elements': 'dict', 'default': [], 'options': directory_options('path')},
        'phase': {'type': 'str', 'choices': ['inspect', 'apply'], 'default': 'inspect'},
        'bundle': {'type': 'path'},
        'digest_cache': {'type': 'str', 'default': DIGEST_CACHE},
        'download_timeout': {'type': 'int', 'default': 60},
    }


def resolve_ids(module, specs, tolerate_unknown):
    """Return [(uid, gid)] in the order of ``specs``.

    Unknown names fail, or with ``tolerate_unknown`` warn and give None.
    """
    ids = []
    for spec in specs:
        uid, gid = lookup_user(spec['owner']), lookup_group(spec['group'])
        for value, kind, name in ((uid, 'user', spec['owner']), (gid, 'group', spec['group'])):
            if value is None:
                msg = '%s: no such %s on the host: %s' % (spec['label'], kind, name)
                if not tolerate_unknown:
                    module.fail_json(msg=msg)
                module.warn(msg)
        ids.append((uid, gid))
    return ids


def inspect(module, specs, ids, dir_specs, dir_ids, cache, downloader):
    results, dir_results = [], []
    try:
        resolve_members(specs, cache, downloader)
    except (InstallError, OSError) as exc:
        module.fail_json(msg=describe_error(exc))
    finally:
        downloader.cleanup()
    for spec, (uid, gid) in zip(dir_specs, dir_ids):
        try:
            dir_results.append(inspect_directory(spec, uid, gid))
        except (InstallError, OSError) as exc:
            module.fail_json(msg='%s: %s' % (spec['label'], describe_error(exc)))
    for spec, (uid, gid) in zip(specs, ids):
        try:
            results.append(inspect_file(spec, uid, gid, cache=cache))
        except InstallError as exc:
            module.fail_json(msg=str(exc))
        except OSError as exc:
            module.fail_json(msg='%s: %s' % (spec['label'], describe_error(exc)))
    if not module.check_mode:
        cache.save()
    changed = any(item['reasons'] for item in results + dir_results)
    module.exit_json(changed=changed, files=results, directories=dir_results)


def apply(module, specs, ids, dir_specs, dir_ids, cache, downloader):
    dir_results = []
    for spec, (uid, gid) in zip(dir_specs, dir_ids):
        try:
            dir_results.append({'path': spec['path'], 'done': ensure_directory(spec, uid, gid)})
        except (InstallError, OSError) as exc:
            module.fail_json(msg='%s: %s' % (spec['label'], describe_error(exc)), directories=dir_results, files=[])
    if module.params['bundle']:
        try:
            unpack_bundle(module.params['bundle'])
        except (InstallError, OSError) as exc:
            module.fail_json(msg='cannot unpack the transferred files: %s' % describe_error(exc),
                             directories=dir_results, files=[])
    last_use = {spec['tmp_src']: spec['index'] for spec in specs if spec['tmp_src']}
    results = []
    try:
        for spec, (uid, gid) in zip(specs, ids):
            if spec['url'] and spec['fetch']:
                created = install_from_url(spec, uid, gid, cache, downloader)
                results.append({'dest': spec['dest'], 'installed': True, 'fixed': [], 'created_dirs': created})
            elif spec['tmp_src']:
                if not spec['sha256']:
                    raise InstallError('%s: tmp_src without sha256' % spec['label'])
                created = install_file(spec, uid, gid, consume=last_use[spec['tmp_src']] == spec['index'],
                                       cache=cache)
                results.append({'dest': spec['dest'], 'installed': True, 'fixed': [], 'created_dirs': created})
            else:
                fixed = fix_attributes(spec, uid, gid, cache=cache)
                results.append({'dest': spec['dest'], 'installed': False, 'fixed': fixed, 'created_dirs': []})
    except InstallError as exc:
        cache.save()
        downloader.cleanup()
        module.fail_json(msg=str(exc), files=results, directories=dir_results)
    except OSError as exc:
        cache.save()
        downloader.cleanup()
        module.fail_json(msg='%s: %s' % (specs[len(results)]['label'], describe_error(exc)), files=results,
                         directories=dir_results)
    cache.save()
    downloader.cleanup()
    changed = any(item['installed'] or item['fixed'] for item in results) or any(d['done'] for d in dir_results)
    module.exit_json(changed=changed, files=results, directories=dir_results)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    inspect_only = params['phase'] == 'inspect' or module.check_mode
    try:
        specs = normalize_files(params['files'], require_sha256=inspect_only)
        dir_specs = normalize_directories(params['directories'])
    except InstallError as exc:
        module.fail_json(msg=str(exc))
    ids = resolve_ids(module, specs, tolerate_unknown=module.check_mode)
    dir_ids = resolve_ids(module, dir_specs, tolerate_unknown=module.check_mode)
    cache = DigestCache(params['digest_cache'] or None)
    # archives wait next to the digest cache (/var/cache/hardway/downloads) while their members are installed
    downloader = Downloader(url_opener(params['download_timeout']),
                            os.path.join(os.path.dirname(params['digest_cache'] or DIGEST_CACHE), 'downloads'))
    if inspect_only:
        inspect(module, specs, ids, dir_specs, dir_ids, cache, downloader)
    apply(module, specs, ids, dir_specs, dir_ids, cache, downloader)


if __name__ == '__main__':
    main()
