"""Atomic publishing of a finished package folder into the store.

A package is built in a hidden folder next to its final place (same filesystem), then moved in
with one rename. Replacing an existing id swaps the two folders in one step with Linux's
`renameat2(RENAME_EXCHANGE)`; where that is unavailable the old folder is renamed away and the new
one renamed in (a window of a few microseconds without the id). The old package is deleted last;
files a reader already opened stay readable until closed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from origin.errors import PublishError

__all__ = ["publish_dir"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    """libc's renameat2 (Linux, glibc >= 2.28), or None where it is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (renameat2 RENAME_EXCHANGE); False if unsupported."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    if code == errno.ENOENT:
        raise FileNotFoundError(code, os.strerror(code), str(b))
    raise OSError(code, os.strerror(code), str(b))


def _replace_dir(folder: Path, final: Path) -> None:
    """Replace the existing `final` with `folder`: swap atomically, else rename old away and new in."""
    old = final.with_name(f".old-{final.name}-{secrets.token_hex(4)}")
    if _exchange(folder, final):
        folder.rename(old)  # `folder` now holds the previous package
    else:
        final.rename(old)
        folder.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def publish_dir(folder: Path, final: Path, *, attempts: int = 5) -> None:
    """Move the complete package `folder` to `final` atomically, replacing any previous one."""
    for _ in range(attempts):
        try:
            try:
                folder.rename(final)
                return
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not final.is_dir():
                    raise
            _replace_dir(folder, final)
            return
        except FileNotFoundError:
            continue  # another publisher moved `final` meanwhile: try again
        except OSError as exc:
            raise PublishError(
                f"cannot publish {final.name} into {final.parent}: {exc.strerror or exc}"
            ) from exc
    raise PublishError(f"cannot publish {final.name}: the id kept changing under us, try again")
