"""Freed data buffers go back to the operating system: glibc's malloc set for streaming.

glibc serves a large allocation with its own ``mmap`` and unmaps it when it is freed, but every
time it frees such a block it raises its threshold for "large" to that block's size (up to 32 MiB).
After the first S3 part of a backup is freed, every later part, and zstd's buffers, came from the
heap instead, whose freed space fragments across the threads' arenas and is not returned: a backup
to S3 grew from 180 to 198 MiB between 1 and 4 GB (zstd's default jobs, 16 MiB parts), and with
today's settings measured 149 MiB at 4 GB, against 130 with the threshold fixed
(bench/README.md, "Memory").
A fixed threshold keeps the parts and the compressor's buffers in their own mappings, returned on
free, while the 1 MiB chunks every reader passes around stay on the heap, where they are reused.
"""

from __future__ import annotations

import ctypes
import functools

#: glibc's ``mallopt`` parameter number for the mmap threshold (malloc.h: ``M_MMAP_THRESHOLD``).
_M_MMAP_THRESHOLD = -3
#: Blocks of this size and larger get their own mapping. Above the 1 MiB chunks (``streams.CHUNK``),
#: below zstd's buffers and the smallest S3 part (5 MiB).
MMAP_THRESHOLD = 4 * 1024 * 1024


def _libc() -> ctypes.CDLL:
    """The C library's symbols, as the interpreter itself is linked to them (``dlopen(NULL)``):
    no ``ctypes.util.find_library``, which runs ``ldconfig -p`` in a child process (measured with
    its import: 40-46 ms of every command's start-up on a busy 2-CPU machine, against 0.05 ms)."""
    return ctypes.CDLL(None)


@functools.cache
def release_large_buffers() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` for this process (once; cheap after).

    Returns whether it was set: False where the C library is not glibc (musl, macOS), where the
    setting does not exist and memory is managed as that library does.
    """
    try:
        libc = _libc()
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl has a mallopt that ignores
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        trim = _libc().malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def return_freed() -> None:
    """Give the memory freed so far back to the operating system (glibc's ``malloc_trim``, every
    arena): between a job's steps, so the buffers a restore's worker threads freed do not stay
    in their arenas under the backup that follows (a job's restore, sanitisation and backup in one
    process peaked at 155 MiB in the 1 GB chain benchmark). Nothing where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
