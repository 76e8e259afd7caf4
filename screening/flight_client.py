"""A client of the Arrow Flight bulk endpoint (``screening.flight``), and the file helper behind
``screening flight screen FILE``.

    from screening.flight_client import FlightScreeningClient, event_batches
    with FlightScreeningClient("grpc://127.0.0.1:50052", token) as client:
        for reply in client.screen(event_batches(frame, rows=10_000)):
            ...  # a pyarrow.RecordBatch per request batch (screening.flight.REPLY_SCHEMA)

Needs ``pyarrow.flight`` (the ``flight`` extra).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.flight as flight

from screening.flight import COMMAND, REQUEST_COLUMNS

__all__ = ["FlightScreeningClient", "event_batches", "screen_file"]


class FlightScreeningClient:
    """Screens record batches over one ``DoExchange`` per ``screen`` call.

    ``location``: ``grpc://host:port`` (``grpc+tls://`` for a server with a certificate; then
    ``tls_ca`` is the PEM of the CA that signed it). ``in_flight`` batches are sent ahead of the
    replies read, so the server is never idle waiting for the next batch.
    """

    def __init__(self, location: str, token: str | None = None, *, tls_ca: bytes | None = None,
                 timeout: float | None = None, in_flight: int = 2) -> None:
        kwargs: dict[str, Any] = {}
        if tls_ca is not None:
            kwargs["tls_root_certs"] = tls_ca
        self._client = flight.FlightClient(location, **kwargs)
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        self._options = flight.FlightCallOptions(headers=headers, timeout=timeout)
        self.in_flight = max(1, in_flight)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FlightScreeningClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def screen(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The decisions of each batch, in order: one reply batch per request batch. A refused
        batch raises the server's error (``FlightServerError`` starting ``INVALID_ARGUMENT:`` for
        a bad column, naming the batch, row and column); the batches answered before it
        stand."""
        writer, reader = self._client.do_exchange(flight.FlightDescriptor.for_command(COMMAND),
                                                  options=self._options)
        pending: deque[int] = deque()
        started = False
        with writer:
            for batch in batches:
                if not started:
                    writer.begin(batch.schema)
                    started = True
                writer.write_batch(batch)
                pending.append(batch.num_rows)
                while len(pending) >= self.in_flight:
                    pending.popleft()
                    yield reader.read_chunk().data
            writer.done_writing()
            while pending:
                pending.popleft()
                yield reader.read_chunk().data


def event_batches(frame: pl.DataFrame, rows: int = 10_000) -> Iterator[pa.RecordBatch]:
    """The transactions of an event frame (``screening.offline.schema.EVENT_SCHEMA``; calls left
    out) as record batches of at most ``rows``, in the request columns."""
    if "kind" in frame.columns:
        frame = frame.filter(pl.col("kind") == "txn")
    present = [c for c in REQUEST_COLUMNS if c in frame.columns]
    table = frame.select(present).to_arrow().combine_chunks()
    yield from table.to_batches(max_chunksize=rows)


def screen_file(client: FlightScreeningClient, path: Path, rows: int = 10_000) -> pl.DataFrame:
    """Screen the transactions of the Parquet or CSV events file ``path`` (read as ``screening
    replay`` reads it); the decisions as one frame, in file order."""
    from screening.offline.events import read_events

    frame = read_events(path)
    replies = list(client.screen(event_batches(frame, rows)))
    if not replies:
        return pl.DataFrame()
    out = pl.from_arrow(pa.Table.from_batches(replies))
    assert isinstance(out, pl.DataFrame)
    return out
