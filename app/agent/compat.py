"""What the agent needs to run the same on Python 3.9 and 3.10 as on the server's 3.11.

The agent ships to machines that have nothing but their own ``python3`` (Amazon Linux
2023: 3.9, Ubuntu 22.04: 3.10), so it keeps to what 3.9 has:

* ``ASYNC_TIMEOUT``: before 3.11, ``asyncio.wait_for`` raises ``asyncio.TimeoutError``,
  which is not the builtin ``TimeoutError``; catch both.
* ``extract_member``: tarfile's extraction filters (PEP 706) came in 3.12 and in patch
  releases of older ones (3.9.17, 3.10.12, 3.11.4); before those, the same ``tar``
  filter rules are applied here.
"""

from __future__ import annotations

import asyncio
import copy
import os
import tarfile

# Not the same class before Python 3.11; one tuple to catch a timed-out asyncio wait.
ASYNC_TIMEOUT: tuple[type[BaseException], ...] = (asyncio.TimeoutError, TimeoutError)


class UnsafeMember(tarfile.TarError):
    """A tar member that would land outside its destination (as tarfile's FilterError)."""


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, dest: str) -> None:
    """Extract ``member`` as ``name`` into ``dest`` under tarfile's ``tar`` filter: leading
    slashes stripped, nothing outside ``dest`` (``..``, absolute paths, through symlinks
    already there), no setuid/setgid/sticky bits nor group/other write permission."""
    if hasattr(tarfile, "tar_filter"):
        tar.extract(member.replace(name=name), dest, filter="tar")
        return
    dest_path = os.path.realpath(dest)
    if name.startswith(("/", os.sep)):
        name = name.lstrip("/" + os.sep)
    if os.path.isabs(name):
        raise UnsafeMember(f"{member.name!r}: an absolute path")
    target = os.path.realpath(os.path.join(dest_path, name))
    if os.path.commonpath([target, dest_path]) != dest_path:
        raise UnsafeMember(f"{member.name!r} would be extracted to {target!r}, outside {dest!r}")
    m = copy.copy(member)
    m.name = name
    if m.mode is not None:
        m.mode &= 0o755
    tar.extract(m, dest)
