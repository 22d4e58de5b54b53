"""Keep the TLS read buffer off mmap.

uvloop's (and asyncio's) TLS protocol reads decrypted data with `SSLObject.read(256 KiB)`, which
allocates a 256 KiB bytes object per read and shrinks it to what was read. glibc's malloc serves
blocks above its mmap threshold (128 KiB until raised) with mmap, so while the threshold is low
each read is an mmap, a page fault, an mremap and a munmap: about 12-25 us instead of 2 us for a
small record. glibc raises the threshold by itself once a larger mmapped block is freed, which
until now happened only by accident of what the process imported first. `raise_mmap_threshold`
makes it deliberate: it frees one such block at start. Elsewhere than glibc it is a harmless
allocation."""

from __future__ import annotations

TLS_READ_SIZE = 256 * 1024  # uvloop's SSL_READ_MAX_SIZE, asyncio's SSLProtocol.max_size
_WARM_SIZE = 2 * TLS_READ_SIZE  # the threshold becomes this size (glibc caps it at 32 MiB)


def raise_mmap_threshold() -> None:
    """Free one block larger than a TLS read, so malloc serves TLS reads from its heap."""
    block = bytearray(_WARM_SIZE)
    del block
