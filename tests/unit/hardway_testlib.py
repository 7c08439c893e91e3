"""Helpers for the tests: run modules in-process, in a subprocess, or through the ansible CLI.

A uniquely named module rather than conftest.py, so that test files can import it even when
pytest has loaded several conftest.py files (which all share the module name ``conftest``).
tests/unit/conftest.py and tests/integration/conftest.py put this directory on sys.path.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

MODULES = 'ansible_collections.hardway.kubernetes.plugins.modules.'


class ModuleResult(dict):
    """The JSON a module printed, plus ``rc`` (0 for exit_json, 1 for fail_json)."""

    @property
    def failed(self):
        return bool(self.get('failed'))


def run_module_inprocess(name, args, check=False, diff=False):
    """Call ``plugins/modules/<name>.py``'s main() with ``args``; returns a ModuleResult."""
    from ansible.module_utils.testing import patch_module_args

    module = importlib.import_module(MODULES + name)
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(full), contextlib.redirect_stdout(out):
        try:
            module.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue()
    try:
        result = ModuleResult(json.loads(text))
    except ValueError:
        raise AssertionError(f'module {name} printed no JSON (exit {code}): {text!r}') from None
    result['rc'] = code
    return result


def run_module_subprocess(name, args, check=False, diff=False, timeout=120):
    """Run ``plugins/modules/<name>.py`` in a fresh Python process, as Ansible would on a host."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([collections_path()] + [p for p in sys.path if p])
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    proc = subprocess.run(
        [sys.executable, '-m', MODULES + name],
        input=json.dumps({'ANSIBLE_MODULE_ARGS': full}),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        result = ModuleResult(json.loads(proc.stdout))
    except ValueError:
        raise AssertionError(
            f'module {name} printed no JSON (exit {proc.returncode}): {proc.stdout!r} {proc.stderr!r}'
        ) from None
    result['rc'] = proc.returncode
    return result


def collections_path():
    """The directory to use as ANSIBLE_COLLECTIONS_PATH for this checkout of the collection."""
    import ansible_collections.hardway.kubernetes as coll

    root = os.path.realpath(os.path.join(os.path.dirname(__file__), '..', '..'))
    for entry in list(coll.__path__):
        if os.path.realpath(entry) == root:
            return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(entry))))
    raise AssertionError(
        f'ansible_collections.hardway.kubernetes is not importable from this checkout ({root}); '
        'put a tree <dir>/ansible_collections/hardway/kubernetes -> the repository on PYTHONPATH'
    )


def ansible_cli(tool='ansible'):
    candidate = os.path.join(os.path.dirname(sys.executable), tool)
    if os.path.exists(candidate):
        return candidate
    return shutil.which(tool)


def run_adhoc(module, args, workdir, check=False, diff=False, python=None, pythonpath=True, timeout=120,
              extra_vars=None):
    """Run ``ansible localhost -m <module> -a <args as JSON>``; returns (rc, result dict, output).

    The one helper for running a module through the ansible command line, for the unit and the
    integration tests. ``module`` without a dot means ``hardway.kubernetes.<module>``. ``workdir``
    (a pathlib.Path) is the working directory and holds an empty ansible.cfg and ANSIBLE_HOME, so
    neither the repository's nor the user's configuration applies. ``python`` is the managed host's
    interpreter (default: this one). With ``pythonpath=False`` the run gets no PYTHONPATH: the
    collection is found through ANSIBLE_COLLECTIONS_PATH only, and a module must bring everything
    it needs. ``extra_vars`` (a dict) goes to ``--extra-vars``. Skips the test when the ansible
    command line is not installed next to this Python.
    """
    cli = ansible_cli()
    if not cli:
        pytest.skip('the ansible command line is not installed next to this Python')
    path = collections_path()
    assert os.path.isdir(os.path.join(path, 'ansible_collections', 'hardway', 'kubernetes')), path
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=path,
        ANSIBLE_CALLBACK_RESULT_FORMAT='json',
        ANSIBLE_LOCALHOST_WARNING='0',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_HOME=str(workdir / '.ansible'),
        ANSIBLE_PYTHON_INTERPRETER=python or sys.executable,
        ANSIBLE_CONFIG=str(workdir / 'ansible.cfg'),
    )
    if not pythonpath:
        env.pop('PYTHONPATH', None)
    (workdir / 'ansible.cfg').write_text('[defaults]\n')
    name = module if '.' in module else f'hardway.kubernetes.{module}'
    cmd = [cli, 'localhost', '-i', 'localhost,', '-c', 'local', '-m', name, '-a', json.dumps(args)]
    if extra_vars:
        cmd += ['--extra-vars', json.dumps(extra_vars)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    proc = subprocess.run(
        cmd, env=env, cwd=str(workdir), capture_output=True, text=True, timeout=timeout, check=False
    )
    # The default callback prints "localhost | CHANGED => {...}" (after the diff, if any).
    marker = re.search(r'^localhost \| [A-Z]+! => ', proc.stdout, re.M) or re.search(
        r'^localhost \| [A-Z]+ => ', proc.stdout, re.M
    )
    try:
        result = json.loads(proc.stdout[marker.end() :]) if marker else None
    except ValueError:
        result = None
    if result is None:
        raise AssertionError(
            f'unexpected ansible output (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}'
        )
    return proc.returncode, result, proc.stdout + proc.stderr
