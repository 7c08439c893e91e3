# Copyright: hardway.kubernetes contributors
# Apache License 2.0 (see LICENSE)
"""Small file helpers shared by the modules (pki, kubeconfig, install_files)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile


def write_atomic(path, data, mode, durable=False, uid=-1, gid=-1):
    """Write ``data`` to ``path`` atomically with permission bits ``mode``.

    ``data`` is bytes, or a binary file object that is copied until its end
    (in chunks, so a large file never sits in memory; an exception raised by
    its ``read`` aborts the write and leaves ``path`` as it was).
    The content goes to a temporary file in the same directory, which is then
    renamed over ``path``: a reader sees either the old or the new file, never
    a partial one, and a private key is never readable by others, not even
    for a moment (the temporary file is created 0600 and only then chmod-ed).
    ``uid``/``gid`` other than -1 set the owner and group of the new file
    (before its mode, since a change of owner clears set-id bits).
    With ``durable`` the data is flushed to disk before the rename.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            if hasattr(data, 'read'):
                shutil.copyfileobj(data, handle, 1024 * 1024)
            else:
                handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def file_mode(path):
    """Permission bits of ``path`` (``None`` when it does not exist)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def read_bytes(path):
    """Return ``(data, state)``; state is ``ok``, ``missing`` or ``unreadable: <why>``."""
    try:
        with open(path, 'rb') as handle:
            return handle.read(), 'ok'
    except FileNotFoundError:
        return None, 'missing'
    except OSError as exc:
        return None, 'unreadable: %s' % (exc.strerror or exc)


def parse_mode(value, option='mode'):
    """Turn a mode given as an octal string ('0600', '600') or an int into an int.

    Raises ``ValueError`` naming ``option`` for anything else.
    """
    if isinstance(value, bool):
        raise ValueError('%s must be an octal string such as "0600", got %r' % (option, value))
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if text.startswith('0o'):
            text = text[2:]
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueError('%s must be an octal string such as "0600", got %r' % (option, value)) from None
    if mode < 0 or mode > 0o7777:
        raise ValueError('%s %r is out of range' % (option, value))
    return mode
