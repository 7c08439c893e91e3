# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin of hardway.kubernetes.install_files: many files to a host in one task.

Per host: hash every source on the controller (big files through a sidecar
cache), run the module once to compare (``phase: inspect``), transfer only
the sources whose content differs (small ones together in one tar archive),
and run the module once more to install them and fix modes and owners
(``phase: apply``). Nothing is transferred or applied in check mode, and the
second module run is skipped when everything is up to date.
"""

from __future__ import annotations

import os
import tempfile

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.hardway.kubernetes.plugins.module_utils.files import parse_mode
from ansible_collections.hardway.kubernetes.plugins.module_utils.install import (
    BUNDLE_MAX_SIZE,
    UP_TO_DATE,
    InstallError,
    format_mode,
    pack_bundle,
    source_sha256,
    summary_line,
)

MODULE = 'hardway.kubernetes.install_files'

# What a task may give; the module's other options are set here.
ARGUMENT_SPEC = {
    'files': {
        'type': 'list', 'elements': 'dict', 'required': True,
        'options': {
            'src': {'type': 'path', 'required': True},
            'dest': {'type': 'str', 'required': True},
            'mode': {'type': 'raw', 'required': True},
            'owner': {'type': 'str', 'default': 'root'},
            'group': {'type': 'str', 'default': 'root'},
        },
    },
}

CONTENT_REASONS = ('missing', 'content')


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

    def _prepare(self, files):
        """Find and hash every source; returns the items, or raises InstallError naming the bad one."""
        items = []
        hashed = {}  # a source listed for several destinations is hashed once
        for index, item in enumerate(files):
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
            try:
                mode = format_mode(parse_mode(item['mode']))
            except ValueError as exc:
                raise InstallError('%s: %s' % (label, exc)) from None
            items.append({
                'module': {'src': src, 'dest': item['dest'], 'mode': mode, 'owner': item['owner'],
                           'group': item['group'], 'sha256': hashed[src][0]},
                'size': hashed[src][1],
            })
        return items

    def _module(self, phase, files, task_vars, bundle=None):
        args = {'phase': phase, 'files': files}
        if bundle:
            args['bundle'] = bundle
        return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)

    def _transfer(self, items, indexes):
        """Copy the sources of ``items[indexes]`` to the remote temporary directory, each source once.

        Returns ``({index: remote path}, remote bundle path or None)``.
        """
        shell = self._connection._shell
        tmpdir = shell.tmpdir or self._make_tmp_path()
        first = {}  # source -> index of its first item, which names the remote copy
        for i in indexes:
            first.setdefault(items[i]['module']['src'], i)
        remote = {i: shell.join_path(tmpdir, 'file%d' % first[items[i]['module']['src']]) for i in indexes}
        sources = sorted(first.values())
        small = [i for i in sources if items[i]['size'] <= BUNDLE_MAX_SIZE]
        if len(small) < 2 or self._is_become_unprivileged():
            small = []
        bundle = None
        if small:
            bundle = shell.join_path(tmpdir, 'bundle.tar')
            fd, local = tempfile.mkstemp(prefix='install_files-', suffix='.tar', dir=C.DEFAULT_LOCAL_TMP)
            os.close(fd)
            try:
                pack_bundle(local, [('file%d' % i, items[i]['module']['src']) for i in small])
                self._transfer_file(local, bundle)
            finally:
                os.unlink(local)
        singles = [remote[i] for i in sources if i not in small]
        for i in sources:
            if i not in small:
                self._transfer_file(items[i]['module']['src'], remote[i])
        self._fixup_perms2([tmpdir] + ([bundle] if bundle else []) + singles, execute=False)
        return remote, bundle

    def _run(self, result, task_vars):
        args = self.validate_argument_spec(ARGUMENT_SPEC)[1]
        try:
            items = self._prepare(args['files'])
        except InstallError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        if not items:
            result.update(changed=False, files=[])
            return result

        inspected = self._module('inspect', [item['module'] for item in items], task_vars)
        self._carry(result, inspected)
        if inspected.get('failed'):
            self._failure(result, inspected, 'inspecting the files failed')
            return result
        found = inspected['files']
        if len(found) != len(items):
            result.update(failed=True, msg='the module returned %d results for %d files' % (len(found), len(items)))
            return result

        changed = [i for i, entry in enumerate(found) if entry['reasons']]
        if changed and not self._task.check_mode:
            transfer = [i for i in changed if found[i]['reasons'][0] in CONTENT_REASONS]
            remote, bundle = self._transfer(items, transfer) if transfer else ({}, None)
            apply_files = []
            for i in changed:
                entry = dict(items[i]['module'])
                if i in remote:
                    entry['tmp_src'] = remote[i]
                apply_files.append(entry)
            applied = self._module('apply', apply_files, task_vars, bundle=bundle)
            self._carry(result, applied)
            if applied.get('failed'):
                done = len(applied.get('files') or [])
                self._failure(result, applied, 'installing the files failed')
                result.update(changed=done > 0, files=self._outcomes(items, found, changed[:done]))
                return result

        result.update(changed=bool(changed), files=self._outcomes(items, found, changed))
        if changed and self._task.diff:
            result['diff'] = self._diff(items, found, changed)
        return result

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
                'src': item['module']['src'],
                'changed': i in changed,
                'reason': reasons[0] if reasons else UP_TO_DATE,
                'reasons': reasons,
            })
        return outcomes

    @staticmethod
    def _diff(items, found, changed):
        before, after = [], []
        for i in changed:
            entry, wanted = found[i], items[i]['module']
            before.append(summary_line(entry['dest'], entry['current']))
            target = {'state': 'file', 'mode': wanted['mode'], 'owner': wanted['owner'], 'group': wanted['group']}
            line = summary_line(entry['dest'], target)
            if 'content' in entry['reasons']:
                line += ', new content'
            after.append('%s (%s)' % (line, ', '.join(entry['reasons'])))
        return {
            'before_header': 'install_files: %d file(s) before' % len(changed),
            'after_header': 'install_files: after',
            'before': to_text('\n'.join(before) + '\n'),
            'after': to_text('\n'.join(after) + '\n'),
        }
