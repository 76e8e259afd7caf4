"""State-store interface; embedded (file) and Redis backends.

The engine's whole state survives a restart as periodic **checkpoints** (``_format``: numpy
arrays, Arrow tables and JSON in a versioned, checksummed container, written atomically), and
every watchlist change, feedback and account-registry update is written through to a
**journal** before it is acknowledged, so a freeze is never lost between checkpoints; every
accepted transaction and call goes to the **event journal** (``EventWriter``: group commit)
before it is answered. ``open_store`` picks the backend from ``[storage]``; ``restore_engine``
loads the latest checkpoint and replays newer journal entries; ``Checkpointer`` writes
checkpoints in the background; ``WriterLease`` keeps a second server off the same store.
"""

from screening.store._base import CheckpointReader, Piece, Store
from screening.store._durable import (
    Checkpointer,
    CheckpointStats,
    RestoreReport,
    StoreStatus,
    WriterLease,
    catch_up,
    decode_registry_change,
    decode_watch_change,
    encode_registry_change,
    encode_watch_change,
    feedback_journal_writer,
    journal_writer,
    open_store,
    policy_keeper,
    read_latest_header,
    registry_journal_writer,
    restore_engine,
    restore_snapshot,
    save_checkpoint,
)
from screening.store._events import EventWriter, decode_event, encode_event
from screening.store._file import FileStore, open_checkpoint_file
from screening.store._format import (
    FORMAT_VERSION,
    Header,
    PartInfo,
    decode,
    decode_ledger,
    encode,
    read_header,
)
from screening.store._memory import MemoryStore
from screening.store._redis import RedisStore, safe_url
from screening.store._timed import TimedStore

__all__ = [
    "FORMAT_VERSION",
    "CheckpointReader",
    "CheckpointStats",
    "Checkpointer",
    "EventWriter",
    "FileStore",
    "Header",
    "MemoryStore",
    "PartInfo",
    "Piece",
    "RedisStore",
    "RestoreReport",
    "Store",
    "StoreStatus",
    "TimedStore",
    "WriterLease",
    "catch_up",
    "decode",
    "decode_event",
    "decode_ledger",
    "decode_registry_change",
    "decode_watch_change",
    "encode",
    "encode_event",
    "encode_registry_change",
    "encode_watch_change",
    "feedback_journal_writer",
    "journal_writer",
    "open_checkpoint_file",
    "open_store",
    "policy_keeper",
    "read_header",
    "read_latest_header",
    "registry_journal_writer",
    "restore_engine",
    "restore_snapshot",
    "safe_url",
    "save_checkpoint",
]
