"""x-request-id generation: random version 4 UUIDs, drawn from batched os.urandom bytes, never
repeated within a process or between a process and a worker it forks."""

from __future__ import annotations

import os
import re
import uuid

from pymesh.proxy import filters
from pymesh.proxy.random_source import RandomHex

UUID4 = re.compile(rb"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_ids_are_version_4_uuids_and_unique_across_batches():
    per_batch = RandomHex.BATCH * 2 // 32  # hex digits per refill / digits per id
    ids = [filters.new_request_id() for _ in range(per_batch * 3 + 5)]
    assert all(UUID4.match(value) for value in ids)
    assert all(uuid.UUID(value.decode()).version == 4 and uuid.UUID(value.decode()).variant == uuid.RFC_4122
               for value in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_worker_does_not_repeat_its_parents_ids():
    filters.new_request_id()  # the parent holds a batch, partly used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, b"\n".join(filters.new_request_id() for _ in range(8)))
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = set()
        with os.fdopen(read, "rb") as stream:
            child = set(stream.read().split(b"\n"))
    finally:
        os.waitpid(pid, 0)
    parent = {filters.new_request_id() for _ in range(8)}
    assert len(child) == 8 and not child & parent
