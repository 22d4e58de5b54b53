"""Holding /dev/cpu_dma_latency at 0 for the run's duration.

On this VM an idle vCPU takes up to a millisecond to wake, which lands in the latency of whichever
request arrives then; while a process holds this file open with 0 written to it, the kernel keeps
CPUs out of deep idle states. The setting lasts exactly as long as the file stays open.
"""

from __future__ import annotations

import contextlib
import os
import struct

PATH = "/dev/cpu_dma_latency"


@contextlib.contextmanager
def hold_zero(enabled: bool = True):
    """Yields a description of the state ("on", "off (requested)", "off (<why>)") for the output."""
    if not enabled:
        yield "off (--no-cpu-dma-latency)"
        return
    try:
        fd = os.open(PATH, os.O_WRONLY)
    except OSError as exc:
        yield f"off ({PATH}: {exc.strerror})"
        return
    try:
        os.write(fd, struct.pack("i", 0))
        yield "on (held at 0)"
    finally:
        os.close(fd)
