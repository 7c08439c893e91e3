# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of hardway.kubernetes.install_files: many files to a host in one task.

Per host: hash every source (a controller file, or content given in the
task) on the controller, big files through a sidecar cache; run the module
once to compare files and directories (``phase: inspect``); transfer only
the sources whose content differs (small ones together in one tar archive);
and run the module once more to create directories, install the files and
fix modes and owners (``phase: apply``). Nothing is transferred or applied in
check mode, and the second module run is skipped when everything is up to
date.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from urllib.parse import urlsplit

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import parse_mode
from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (
    BUNDLE_MAX_SIZE,
    UP_TO_DATE,
    InstallError,
    directory_options,
    format_mode,
    pack_bundle,
    source_sha256,
    summary_line,
)

MODULE = 'hardway.kubernetes.install_files'

# What a task may give; the module's other options are set here.
ARGUMENT_SPEC = {
    'files': {
        'type': 'list', 'elements': 'dict', 'default': [],
        'options': {
            'src': {'type': 'path'},
            'content': {'type': 'str'},
            'url': {'type': 'str'},
            'url_sha256': {'type': 'str'},
            'member': {'type': 'str'},
            'dest': {'type': 'str', 'required': True},
            'mode': {'type': 'raw', 'required': True},
            'owner': {'type': 'str', 'default': 'root'},
            'group': {'type': 'str', 'default': 'root'},
            'diff': {'type': 'bool', 'default': True},
        },
        'mutually_exclusive': [['src', 'content', 'url']],
        'required_one_of': [['src', 'content', 'url']],
        'required_by': {'url': 'url_sha256', 'member': 'url', 'url_sha256': 'url'},
    },
    'digest_cache': {'type': 'str'},
    'download_timeout': {'type': 'int'},
    # str, not path: a path is the host's, never expanded on the controller
    'directories': {'type': 'list', 'elements': 'dict', 'default': [], 'options': directory_options('str')},
}

CONTENT_REASONS = ('missing', 'content')


def _mode(label, value):
    """The mode of an item as an octal string, or InstallError naming the item."""
    try:
        return format_mode(parse_mode(value))
    except ValueError as exc:
        raise InstallError('%s: %s' % (label, exc)) from None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # the remote temporary directory is made only when something is transferred
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        had_tmpdir = self._connection._shell.tmpdir is not None
        try:
            return self._run(result, task_vars or {})
        finally:
            if not had_tmpdir and self._connection._shell.tmpdir is not None:
                self._remove_tmp_path(self._connection._shell.tmpdir)

    # ------------------------------------------------------------ steps

    def _prepare(self, files, text_diff):
        """Find and hash every source; returns the items, or raises InstallError naming the bad one.

        An item's ``key`` names its source (a controller path, or the digest
        of its content) so that a source listed twice is transferred once.
        """
        items = []
        hashed = {}  # a source listed for several destinations is hashed once
        for index, item in enumerate(files):
            content = item['content']
            src = None
            if item['url']:
                # downloaded by the host itself: nothing to hash or transfer here
                label = 'files[%d] (url=%s, dest=%s)' % (index, item['url'], item['dest'])
                mode = _mode(label, item['mode'])
                if urlsplit(item['url']).scheme.lower() not in ('http', 'https'):
                    raise InstallError('%s: url must be an http:// or https:// URL' % label)
                module = {'url': item['url'], 'url_sha256': item['url_sha256'], 'member': item['member'],
                          'dest': item['dest'], 'mode': mode, 'owner': item['owner'], 'group': item['group']}
                items.append({'module': module, 'size': 0, 'key': 'url:%s' % item['url'], 'data': None,
                              'text': None, 'source': item['url'] + ('#' + item['member'] if item['member'] else '')})
                continue
            if content is None:
                label = 'files[%d] (src=%s, dest=%s)' % (index, item['src'], item['dest'])
                try:
                    src = self._find_needle('files', item['src'])
                except AnsibleError:
                    raise InstallError('%s: src not found on the controller' % label) from None
                if src not in hashed:
                    try:
                        hashed[src] = (source_sha256(src), os.path.getsize(src))
                    except InstallError as exc:
                        raise InstallError('%s: %s' % (label, exc)) from None
                    except OSError as exc:
                        raise InstallError('%s: cannot read src %s: %s' % (label, src, exc.strerror or exc)) from None
                digest, size = hashed[src]
                key, data = src, None
            else:
                label = 'files[%d] (content, dest=%s)' % (index, item['dest'])
                data = content.encode('utf-8')
                digest, size = hashlib.sha256(data).hexdigest(), len(data)
                key = 'content:' + digest
            mode = _mode(label, item['mode'])
            module = {'src': src, 'dest': item['dest'], 'mode': mode, 'owner': item['owner'],
                      'group': item['group'], 'sha256': digest}
            show_text = text_diff and data is not None and item['diff']
            if show_text:
                module['text_diff'] = True
            items.append({'module': module, 'size': size, 'key': key, 'data': data,
                          'text': content if show_text else None, 'source': src})
        return items

    def _module(self, phase, files, directories, task_vars, bundle=None):
        args = {'phase': phase, 'files': files, 'directories': directories}
        if self._digest_cache is not None:
            args['digest_cache'] = self._digest_cache
        if self._download_timeout is not None:
            args['download_timeout'] = self._download_timeout
        if bundle:
            args['bundle'] = bundle
        return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

    def _transfer(self, items, indexes):
        """Copy the sources of ``items[indexes]`` to the remote temporary directory, each source once.

        Returns ``({index: remote path}, remote bundle path or None)``.
        """
        shell = self._connection._shell
        tmpdir = shell.tmpdir or self._make_tmp_path()
        first = {}  # source key -> index of its first item, which names the remote copy
        for i in indexes:
            first.setdefault(items[i]['key'], i)
        remote = {i: shell.join_path(tmpdir, 'file%d' % first[items[i]['key']]) for i in indexes}
        sources = sorted(first.values())
        local_dir = tempfile.mkdtemp(prefix='install_files-', dir=C.DEFAULT_LOCAL_TMP)
        try:
            local = {}
            for i in sources:  # content given in the task goes through a local file like any source
                if items[i]['data'] is None:
                    local[i] = items[i]['module']['src']
                else:
                    local[i] = os.path.join(local_dir, 'file%d' % i)
                    with open(local[i], 'wb') as handle:
                        handle.write(items[i]['data'])
            small = [i for i in sources if items[i]['size'] <= BUNDLE_MAX_SIZE]
            if len(small) < 2 or self._is_become_unprivileged():
                small = []
            bundle = None
            if small:
                bundle = shell.join_path(tmpdir, 'bundle.tar')
                archive = os.path.join(local_dir, 'bundle.tar')
                pack_bundle(archive, [('file%d' % i, local[i]) for i in small])
                self._transfer_file(archive, bundle)
            singles = [remote[i] for i in sources if i not in small]
            for i in sources:
                if i not in small:
                    self._transfer_file(local[i], remote[i])
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
        self._fixup_perms2([tmpdir] + ([bundle] if bundle else []) + singles, execute=False)
        return remote, bundle

    def _run(self, result, task_vars):
        args = self.validate_argument_spec(ARGUMENT_SPEC)[1]
        self._digest_cache = args['digest_cache']
        self._download_timeout = args['download_timeout']
        try:
            items = self._prepare(args['files'], text_diff=bool(self._task.diff))
            directories = [self._directory(index, item) for index, item in enumerate(args['directories'])]
        except InstallError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        if not items and not directories:
            result.update(changed=False, files=[], directories=[])
            return result

        inspected = self._module('inspect', [item['module'] for item in items], directories, task_vars)
        self._carry(result, inspected)
        if inspected.get('failed'):
            self._failure(result, inspected, 'inspecting the files failed')
            return result
        found, found_dirs = inspected['files'], inspected['directories']
        if len(found) != len(items) or len(found_dirs) != len(directories):
            result.update(failed=True, msg='the module returned %d results for %d files and %d directories'
                          % (len(found) + len(found_dirs), len(items), len(directories)))
            return result

        changed = [i for i, entry in enumerate(found) if entry['reasons']]
        changed_dirs = [i for i, entry in enumerate(found_dirs) if entry['reasons']]
        if (changed or changed_dirs) and not self._task.check_mode:
            content = [i for i in changed if found[i]['reasons'][0] in CONTENT_REASONS]
            transfer = [i for i in content if not items[i]['module'].get('url')]
            remote, bundle = self._transfer(items, transfer) if transfer else ({}, None)
            apply_files = []
            for i in changed:
                entry = dict(items[i]['module'])
                if i in remote:
                    entry['tmp_src'] = remote[i]
                if entry.get('url') and i in content:
                    entry['fetch'] = True  # the host downloads it
                apply_files.append(entry)
            applied = self._module('apply', apply_files, [directories[i] for i in changed_dirs], task_vars,
                                   bundle=bundle)
            self._carry(result, applied)
            if applied.get('failed'):
                done = len(applied.get('files') or [])
                done_dirs = len(applied.get('directories') or [])
                self._failure(result, applied, 'installing the files failed')
                result.update(changed=done + done_dirs > 0, files=self._outcomes(items, found, changed[:done]),
                              directories=self._dir_outcomes(found_dirs, changed_dirs[:done_dirs]))
                return result

        result.update(changed=bool(changed or changed_dirs), files=self._outcomes(items, found, changed),
                      directories=self._dir_outcomes(found_dirs, changed_dirs))
        if (changed or changed_dirs) and self._task.diff:
            result['diff'] = self._diff(items, found, changed, directories, found_dirs, changed_dirs)
        return result

    @staticmethod
    def _directory(index, item):
        label = 'directories[%d] (%s)' % (index, item['path'])
        mode = _mode(label, item['mode'])
        return {'path': item['path'], 'mode': mode, 'owner': item['owner'], 'group': item['group']}

    # ------------------------------------------------------------ results

    @staticmethod
    def _failure(result, module_result, default_msg):
        """Report a failed module run, with what it tells (msg, and module_stderr and such when it crashed)."""
        for key, value in module_result.items():
            if key not in ('files', 'changed', 'invocation', 'ansible_facts', 'warnings', 'deprecations'):
                result[key] = value
        result.update(failed=True, msg=module_result.get('msg') or default_msg)

    @staticmethod
    def _carry(result, module_result):
        """Keep what a module run reports besides its own result: discovered facts, warnings."""
        facts = module_result.get('ansible_facts')
        if facts:
            result.setdefault('ansible_facts', {}).update(facts)
        for key in ('warnings', 'deprecations'):
            if module_result.get(key):
                result.setdefault(key, []).extend(module_result[key])

    @staticmethod
    def _outcomes(items, found, changed):
        changed = set(changed)
        outcomes = []
        for i, (item, entry) in enumerate(zip(items, found)):
            reasons = list(entry['reasons'])
            outcomes.append({
                'dest': entry['dest'],
                'src': item['source'],
                'changed': i in changed,
                'reason': reasons[0] if reasons else UP_TO_DATE,
                'reasons': reasons,
            })
        return outcomes

    @staticmethod
    def _dir_outcomes(found_dirs, changed_dirs):
        changed_dirs = set(changed_dirs)
        return [{'path': entry['path'], 'changed': i in changed_dirs,
                 'reason': entry['reasons'][0] if entry['reasons'] else UP_TO_DATE,
                 'reasons': list(entry['reasons'])} for i, entry in enumerate(found_dirs)]

    @staticmethod
    def _diff(items, found, changed, directories, found_dirs, changed_dirs):
        """A summary of what changes (never a file's content), then a text diff per file given as content."""
        before, after = [], []
        for i in changed_dirs:
            entry, wanted = found_dirs[i], directories[i]
            before.append(summary_line(entry['path'], entry['current']))
            target = {'state': 'directory', 'mode': wanted['mode'], 'owner': wanted['owner'],
                      'group': wanted['group']}
            after.append('%s (%s)' % (summary_line(entry['path'], target), ', '.join(entry['reasons'])))
        texts = []
        for i in changed:
            entry, wanted = found[i], items[i]['module']
            before.append(summary_line(entry['dest'], entry['current']))
            target = {'state': 'file', 'mode': wanted['mode'], 'owner': wanted['owner'], 'group': wanted['group']}
            line = summary_line(entry['dest'], target)
            if 'content' in entry['reasons']:
                line += ', new content'
            readable = 'current_text' in entry or entry['current']['state'] == 'absent'
            if entry['reasons'][0] in CONTENT_REASONS and items[i]['text'] is not None and readable:
                texts.append({'before_header': entry['dest'], 'after_header': entry['dest'],
                              'before': to_text(entry.get('current_text', '')), 'after': to_text(items[i]['text'])})
            after.append('%s (%s)' % (line, ', '.join(entry['reasons'])))
        summary = {
            'before_header': 'install_files: %d item(s) before' % len(before),
            'after_header': 'install_files: after',
            'before': to_text('\n'.join(before) + '\n'),
            'after': to_text('\n'.join(after) + '\n'),
        }
        return [summary] + texts
