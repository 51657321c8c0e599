"""The data directory on disk: who may read it, how much it holds, how much room is left.

memoryd runs with umask 077 (``cli._serve`` and the engine worker set it), so everything it
creates is 0600/0700 whatever the caller's umask. A data directory made earlier, or by hand,
may still be open to other local users, who could then read every memory from disk around the
socket's SO_PEERCRED check: ``private_dir`` closes it at start.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def loose_bits(mode: int) -> int:
    """The group/other permission bits of ``mode`` (0 when private)."""
    return stat.S_IMODE(mode) & 0o077


def private_dir(path: Path) -> str | None:
    """Create ``path`` 0700, or tighten an existing one we own to 0700. The data directory is
    memoryd's alone, so closing it is safe and cannot wait for an operator (until then, anyone
    on the machine reads every memory); files inside need no change, as nobody else can reach
    them through a 0700 directory. Returns what was done or could not be done (for a WARNING),
    None when the directory was already private."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:  # the store's own open then fails, saying why
        return f"cannot create data directory {path}: {exc.strerror}"
    loose = loose_bits(st.st_mode)
    if not loose:
        return None
    was = f"{stat.S_IMODE(st.st_mode):04o}"
    if st.st_uid != os.getuid():
        return (f"data directory {path} (mode {was}) is owned by uid {st.st_uid}, not by "
                f"memoryd ({os.getuid()}): other local users may read it; memoryd cannot fix it")
    try:
        os.chmod(path, 0o700)
    except OSError as exc:
        return f"data directory {path} has mode {was} and cannot be made private: {exc.strerror}"
    return f"data directory {path} had mode {was} (readable by other users): changed to 0700"


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (like ``du``: sparse files count what they use)."""
    total = 0
    stack = [path]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(Path(entry.path))
    return total


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding ``path`` (or its
    nearest existing ancestor)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            st = os.statvfs(candidate)
            return st.f_bavail * st.f_frsize
    return 0


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
