"""What the downstream and upstream HTTP/2 sides share: a stream's receive-side backpressure,
and writing what the codec queued once per loop iteration."""

from __future__ import annotations


class ReceivingStream:
    """A stream whose received DATA is acknowledged (its window reopened) only once passed on,
    and not while its consumer paused it: the peer's windows then do the pausing. (It also ends
    its own side of the stream, the one sending act both sides do alike.)"""

    __slots__ = ("connection", "id", "exchange", "paused", "unacked")

    def __init__(self, connection, stream_id: int) -> None:
        self.connection = connection
        self.id = stream_id
        self.exchange = None
        self.paused = False
        self.unacked = 0

    def passed_on(self, size: int) -> None:
        """`size` DATA bytes were passed on to the exchange."""
        if self.paused:
            self.unacked += size
        else:
            self.connection.codec.acknowledge_received(self.id, size)

    def send_end(self, trailers: list) -> None:
        """End our side of the stream: with trailers, or an empty DATA frame with END_STREAM."""
        codec = self.connection.codec
        if trailers:
            codec.send_trailers(self.id, trailers)
        else:
            codec.end_stream(self.id)
        self.connection.flush_soon()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        if self.unacked:
            self.connection.codec.acknowledge_received(self.id, self.unacked)
            self.unacked = 0
            self.connection.flush_soon()


class CodecWriter:
    """Mixin of an HTTP/2 connection protocol (`codec`, `transport`, `loop`): its output is
    written once per loop iteration however many streams queued frames."""

    _flush_pending = False

    def flush_soon(self) -> None:
        """Write what the codec queued, at the end of this loop turn (nothing queued: no turn)."""
        if not self._flush_pending and self.codec.has_output:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        out = self.codec.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
