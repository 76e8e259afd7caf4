"""The embedded backend: a directory on local disk.

    DIR/checkpoint.ckpt      the latest checkpoint (written to a temp file, fsync'd, renamed)
    DIR/watchlist.journal    one line per watchlist change: "SEQ CRC32 JSON\\n", fsync'd
    DIR/events.SEQ.journal   accepted transactions and calls, one line per event: "SEQ CRC32
                             JSON\\n" (SEQ: the first event in the segment); a new segment at
                             each start and after each checkpoint, older ones deleted once a
                             checkpoint includes them
    DIR/writer.lock          held (flock) by the one server writing here; says who it is
    DIR/policies/HASH.toml   the text of each policy this store's servers decided under, by
                             its version (a restart re-applies the journal under them)

The lock is the kernel's: it goes with the process, however the process ends, so a crashed
server never leaves the directory claimed. Every file is created readable by its owner only
(0600; a directory this backend creates, 0700): the state holds account and phone numbers.

A crash while writing a checkpoint leaves only a temp file (removed at the next start); a crash
while appending to the journal leaves at most a torn last line, which was never acknowledged
and is ignored (and cut off when the journal is next appended to).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from screening.errors import CheckpointError, StoreBusy, StoreUnavailable
from screening.store._base import CheckpointReader, Piece, Store

__all__ = ["FileStore", "open_checkpoint_file"]

CHECKPOINT = "checkpoint.ckpt"
JOURNAL = "watchlist.journal"
EVENTS_PREFIX, EVENTS_SUFFIX = "events.", ".journal"
WRITER_LOCK = "writer.lock"
POLICIES = "policies"


@contextlib.contextmanager
def _errors(location: str, action: str) -> Iterator[None]:
    """OSError -> StoreUnavailable naming the store and what failed."""
    try:
        yield
    except OSError as exc:
        raise StoreUnavailable(f"storage {location}: cannot {action}: "
                               f"{exc.strerror or exc}") from exc


def _open_private(path: Path, flags: int) -> int:
    """os.open with mode 0600; a file an earlier build left group- or world-readable is
    narrowed to 0600 as well."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def _private_writer(path: Path) -> BinaryIO:
    """A new file (mode 0600) open for binary writing."""
    return os.fdopen(_open_private(path, os.O_WRONLY | os.O_TRUNC), "wb")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileReader(CheckpointReader):
    def __init__(self, path: Path, location: str) -> None:
        self.where = str(path)
        self._location = location
        with _errors(location, f"read {path}"):
            self._fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, size: int) -> bytes:
        chunks = []
        with _errors(self._location, f"read {self.where}"):
            while size > 0:
                data = os.pread(self._fd, min(size, 1 << 30), offset)
                if not data:
                    break
                chunks.append(data)
                offset += len(data)
                size -= len(data)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_checkpoint_file(path: str | Path) -> CheckpointReader:
    """A checkpoint file read directly (e.g. ``checkpoint.ckpt`` copied out of a store)."""
    return _FileReader(Path(path), f"file {path}")


def _write_atomically(final: Path, tmp: Path, pieces: Iterable[Piece], location: str,
                      action: str) -> None:
    """``pieces`` into ``tmp`` (owner-only), fsync'd, renamed over ``final``, the directory
    fsync'd: a reader sees the old file or the whole new one; ``tmp`` never stays behind."""
    try:
        with _errors(location, action):
            with _private_writer(tmp) as f:
                for piece in pieces:
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class FileStore(Store):
    """Checkpoints and the watchlist journal in the directory ``path``.

    ``create=False`` (for inspection) neither creates the directory nor touches its files.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.dir = Path(path)
        self.location = f"file {self.dir}"
        self._lock = threading.Lock()
        self._journal_fh: BinaryIO | None = None
        self._seq = 0
        self._writer_fd = -1
        # the event journal's open segment, the last event written to it, and its own lock
        # (the group-commit writer appends while the checkpointer trims)
        self._events_lock = threading.Lock()
        self._events_fh: BinaryIO | None = None
        self._events_last = 0
        with _errors(self.location, "open the directory"):
            if create:
                self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            elif not self.dir.is_dir():
                raise FileNotFoundError(2, "no such directory")

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL

    # ------------------------------------------------------------------ the writer
    def claim_writer(self, owner: str) -> None:
        if self._writer_fd >= 0:
            return
        path = self.dir / WRITER_LOCK
        with _errors(self.location, f"open {path}"):
            fd = _open_private(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreBusy(f"storage {self.location}: another server writes here ({holder}); "
                            "stop it first, or give each server its own [storage] path") from None
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(f"storage {self.location}: cannot lock {path}: "
                                   f"{exc.strerror or exc}") from exc
        try:
            with _errors(self.location, f"write {path}"):
                os.ftruncate(fd, 0)
                os.pwrite(fd, owner.encode() + b"\n", 0)
                for stale in self.dir.glob(f".{CHECKPOINT}.tmp-*"):
                    stale.unlink()  # a checkpoint write that a crash interrupted
        except BaseException:
            os.close(fd)
            raise
        self._writer_fd = fd

    def release_writer(self) -> None:
        if self._writer_fd >= 0:
            os.close(self._writer_fd)  # closing the descriptor drops the flock
            self._writer_fd = -1

    def check(self) -> None:
        with _errors(self.location, "write to the directory"):
            if not self.dir.is_dir():
                raise FileNotFoundError(2, "no such directory")
            if not os.access(self.dir, os.W_OK | os.X_OK):
                raise PermissionError(13, "permission denied")

    # ------------------------------------------------------------------ checkpoints
    def write_checkpoint(self, pieces: Iterable[Piece]) -> str:
        final = self.checkpoint_path
        tmp = self.dir / f".{CHECKPOINT}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        _write_atomically(final, tmp, pieces, self.location, f"write {tmp}")
        return str(final)

    def open_checkpoint(self) -> CheckpointReader | None:
        if not self.checkpoint_path.exists():
            return None
        return _FileReader(self.checkpoint_path, self.location)

    # ------------------------------------------------------------------ policies
    def _policy_path(self, version: str) -> Path:
        # a version is free text from the policy file: the file name is its digest
        return self.dir / POLICIES / (hashlib.sha256(version.encode()).hexdigest()[:32] + ".toml")

    def save_policy(self, version: str, text: str) -> None:
        path = self._policy_path(version)
        if path.exists():
            return
        with _errors(self.location, f"write {path}"):
            path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        _write_atomically(path, tmp, [text.encode()], self.location, f"write {path}")

    def load_policy(self, version: str) -> str | None:
        path = self._policy_path(version)
        if not path.exists():
            return None
        with _errors(self.location, f"read {path}"):
            return path.read_text(encoding="utf-8")

    # ------------------------------------------------------------------ journal
    def append_journal(self, entry: bytes) -> int:
        if b"\n" in entry:
            raise ValueError("a journal entry is one line")
        with self._lock, _errors(self.location, f"append to {self.journal_path}"):
            fh = self._journal()
            seq = self._seq + 1
            body = b"%d %s" % (seq, entry)
            start = fh.tell()
            try:
                fh.write(b"%d %08x %s\n" % (seq, zlib.crc32(body), entry))
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                # leave no torn line behind for the next append to follow
                with contextlib.suppress(OSError):
                    fh.truncate(start)
                self._close_journal()
                raise
            self._seq = seq
            return seq

    def advance_journal(self, seq: int) -> None:
        with self._lock:
            self._seq = max(self._seq, seq)

    def read_journal(self, after: int = 0) -> list[tuple[int, bytes]]:
        with self._lock:
            entries, _ = self._scan()
        return [(seq, e) for seq, e in entries if seq > after]

    def trim_journal(self, upto: int) -> int:
        with self._lock, _errors(self.location, f"rewrite {self.journal_path}"):
            entries, _ = self._scan()
            keep = [(seq, e) for seq, e in entries if seq > upto]
            if len(keep) == len(entries):
                return 0
            self._close_journal()
            tmp = self.dir / f".{JOURNAL}.tmp-{os.getpid()}"
            with _private_writer(tmp) as f:
                for seq, e in keep:
                    body = b"%d %s" % (seq, e)
                    f.write(b"%d %08x %s\n" % (seq, zlib.crc32(body), e))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.journal_path)
            _fsync_dir(self.dir)
            return len(entries) - len(keep)

    def _journal(self) -> BinaryIO:
        """The journal open for appending, a torn last line cut off, ``_seq`` its last number."""
        if self._journal_fh is None:
            entries, good_end = self._scan()
            self._seq = max(self._seq, entries[-1][0] if entries else 0)
            # kept open between appends
            fh = os.fdopen(_open_private(self.journal_path, os.O_WRONLY | os.O_APPEND), "ab")
            if fh.tell() > good_end:
                fh.truncate(good_end)
            fh.seek(good_end)
            self._journal_fh = fh
        return self._journal_fh

    def _close_journal(self) -> None:
        if self._journal_fh is not None:
            with contextlib.suppress(OSError):
                self._journal_fh.close()
            self._journal_fh = None

    def _scan(self) -> tuple[list[tuple[int, bytes]], int]:
        """Every entry, and the offset after the last good line. A bad last line is a torn
        write (never acknowledged) and is skipped; a bad line before good ones is corruption."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        return _scan_lines(data, f"watchlist journal {self.journal_path}")

    # ------------------------------------------------------------------ event journal
    def _segments(self) -> list[tuple[int, Path]]:
        """The event journal's segments, by first event number."""
        out = []
        for p in self.dir.glob(f"{EVENTS_PREFIX}*{EVENTS_SUFFIX}"):
            first = p.name[len(EVENTS_PREFIX):-len(EVENTS_SUFFIX)]
            if first.isdigit():
                out.append((int(first), p))
        return sorted(out)

    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        if not entries:
            return
        with self._events_lock, _errors(self.location, "append to the event journal"):
            fh = self._events_fh
            if fh is None:
                path = self.dir / f"{EVENTS_PREFIX}{entries[0][0]:020d}{EVENTS_SUFFIX}"
                fh = os.fdopen(_open_private(path, os.O_WRONLY | os.O_APPEND | os.O_TRUNC), "ab")
                self._events_fh = fh
                _fsync_dir(self.dir)
            out = bytearray()
            for seq, e in entries:
                body = b"%d %s" % (seq, e)
                out += b"%d %08x %s\n" % (seq, zlib.crc32(body), e)
            start = fh.tell()
            try:
                fh.write(out)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(start)
                raise
            self._events_last = entries[-1][0]

    def sync_events(self) -> None:
        with self._events_lock, _errors(self.location, "fsync the event journal"):
            if self._events_fh is not None:
                os.fsync(self._events_fh.fileno())

    def read_events(self, after: int = 0) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        with self._events_lock, _errors(self.location, "read the event journal"):
            segments = self._segments()
            for i, (_, path) in enumerate(segments):
                if i + 1 < len(segments) and segments[i + 1][0] <= after + 1:
                    continue  # every event in it is older than ``after``
                entries, _ = _scan_lines(path.read_bytes(), f"event journal {path}")
                for seq, e in entries:
                    if seq > after:
                        if out and seq <= out[-1][0]:
                            raise CheckpointError(f"event journal {path}: event {seq} after "
                                                  f"{out[-1][0]} (out of order)")
                        out.append((seq, e))
        return out

    def trim_events(self, upto: int) -> int:
        """Closes the open segment (the next append starts a new one) and deletes every segment
        whose events are all numbered ``upto`` or below."""
        with self._events_lock, _errors(self.location, "trim the event journal"):
            last_open = self._events_last if self._events_fh is not None else None
            if self._events_fh is not None:
                with contextlib.suppress(OSError):
                    self._events_fh.close()
                self._events_fh = None
            segments = self._segments()
            dropped = 0
            for i, (_, path) in enumerate(segments):
                nxt = segments[i + 1][0] if i + 1 < len(segments) else None
                whole = (nxt is not None and nxt <= upto + 1) or (
                    nxt is None and last_open is not None and last_open <= upto)
                if whole:
                    path.unlink()
                    dropped += 1
            if dropped:
                _fsync_dir(self.dir)
            return -1 if dropped else 0

    def close(self) -> None:
        with self._lock:
            self._close_journal()
        with self._events_lock:
            if self._events_fh is not None:
                with contextlib.suppress(OSError):
                    self._events_fh.flush()
                    os.fsync(self._events_fh.fileno())
                    self._events_fh.close()
                self._events_fh = None
        self.release_writer()


def _scan_lines(data: bytes, where: str) -> tuple[list[tuple[int, bytes]], int]:
    """The entries of a journal file's bytes and the offset after the last good line. A bad
    last line is a torn write (never acknowledged) and is skipped; a bad line before good ones
    is corruption."""
    entries: list[tuple[int, bytes]] = []
    pos = good_end = 0
    lineno = 0
    while pos < len(data):
        lineno += 1
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        parsed = _parse_line(data[pos:end]) if nl >= 0 else None
        pos = end + 1
        if parsed is None or (entries and parsed[0] <= entries[-1][0]):
            if pos < len(data):
                raise CheckpointError(f"{where}:{lineno}: corrupted line (checksum or sequence); "
                                      "later lines follow it")
            break
        entries.append(parsed)
        good_end = pos
    return entries, good_end


def _parse_line(line: bytes) -> tuple[int, bytes] | None:
    try:
        seq_s, crc_s, entry = line.split(b" ", 2)
        seq = int(seq_s)
        if zlib.crc32(b"%d %s" % (seq, entry)) != int(crc_s, 16):
            return None
        return seq, entry
    except ValueError:
        return None
