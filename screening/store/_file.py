"""The embedded backend: a directory on local disk.

    DIR/checkpoint.ckpt      the latest checkpoint (written to a temp file, fsync'd, renamed)
    DIR/watchlist.journal    one line per watchlist change: "SEQ CRC32 JSON\\n", fsync'd
    DIR/writer.lock          held (flock) by the one server writing here; says who it is

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
import os
import secrets
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from screening.errors import CheckpointError, StoreBusy, StoreUnavailable
from screening.store._base import CheckpointReader, Piece, Store

__all__ = ["FileStore", "open_checkpoint_file"]

CHECKPOINT = "checkpoint.ckpt"
JOURNAL = "watchlist.journal"
WRITER_LOCK = "writer.lock"


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
        try:
            with _errors(self.location, f"write {tmp}"):
                with _private_writer(tmp) as f:
                    for piece in pieces:
                        f.write(piece)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
                _fsync_dir(self.dir)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return str(final)

    def open_checkpoint(self) -> CheckpointReader | None:
        if not self.checkpoint_path.exists():
            return None
        return _FileReader(self.checkpoint_path, self.location)

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
                    raise CheckpointError(f"watchlist journal {self.journal_path}:{lineno}: corrupted "
                                          "line (checksum or sequence); later lines follow it")
                break
            entries.append(parsed)
            good_end = pos
        return entries, good_end

    def close(self) -> None:
        with self._lock:
            self._close_journal()
        self.release_writer()


def _parse_line(line: bytes) -> tuple[int, bytes] | None:
    try:
        seq_s, crc_s, entry = line.split(b" ", 2)
        seq = int(seq_s)
        if zlib.crc32(b"%d %s" % (seq, entry)) != int(crc_s, 16):
            return None
        return seq, entry
    except ValueError:
        return None
