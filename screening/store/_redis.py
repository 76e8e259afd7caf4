"""The Redis backend (redis-py with hiredis).

    PREFIXckpt:gen             generation counter (INCR)
    PREFIXckpt:GEN:I           chunk I of checkpoint generation GEN (at most 64 MB each)
    PREFIXckpt:latest          {"gen", "chunks", "size", "chunk_bytes", "id"}: the pointer readers follow
    PREFIXjournal              list of "SEQ JSON" watchlist changes (RPUSH)
    PREFIXjournal:seq          journal sequence counter
    PREFIXevents               list of "SEQ JSON" accepted transactions and calls (RPUSH, one
                               script call per group-commit batch; trimmed after a checkpoint)
    PREFIXwriter               the writer lease: "OWNER TOKEN", expires unless renewed

One server writes under a prefix: it takes the lease at start (SET NX with an expiry) and
renews it; the ``latest`` switch and journal appends happen only while it still holds it, so a
server that lost the lease (paused past its expiry, say) cannot overwrite its successor's state.
A server whose lease expired while Redis was out of its reach takes it back
(``reclaim_writer``) only if nobody holds it and nobody switched ``latest`` since (a pointer
this server wrote or read, or none: Redis lost its data); the lease is renewed over a
connection of its own with a short timeout, so an outage is noticed within a second or two.

A checkpoint is written as a new generation, chunk by chunk; then ``latest`` is switched to it
in one SET; then older generations are deleted (never newer ones: they are a successor's). A
crash part way leaves ``latest`` on the previous, complete generation (the orphaned chunks go
at the next successful write). How durable the journal is depends on the Redis server's own
persistence (``appendonly yes`` and ``appendfsync always`` make an acknowledged watchlist change
survive a Redis crash).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from screening.errors import CheckpointError, StoreBusy, StoreUnavailable
from screening.store._base import CheckpointReader, Piece, Store

__all__ = ["CHUNK_BYTES", "RedisStore", "safe_url"]

CHUNK_BYTES = 64 << 20

# KEYS[3]/ARGV[2]: the writer lease and our token ('' when this store never claimed it); Lua
# numbers are doubles, and `..` would write a big one as 1e+14: the number is formatted as %d
_APPEND = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
local n = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], string.format('%d', n) .. ' ' .. ARGV[1])
return n
"""
# KEYS: events, writer; ARGV: our token ('' unchecked), then the "SEQ JSON" entries of one batch
_APPEND_EVENTS = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
for i = 2, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return #ARGV - 1
"""
# Events are numbered consecutively, so the ones at or below ARGV[1] are a prefix whose length
# the first entry's number gives; checked at its end, else counted one by one.
_TRIM_EVENTS = """
local upto = tonumber(ARGV[1])
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return 0 end
local f = tonumber(string.match(first, '^(%d+) '))
if f == nil or f > upto then return 0 end
local n = upto - f + 1
local len = redis.call('LLEN', KEYS[1])
if n > len then n = len end
local last = tonumber(string.match(redis.call('LINDEX', KEYS[1], n - 1), '^(%d+) ') or '')
local after = redis.call('LINDEX', KEYS[1], n)
local nxt = after and tonumber(string.match(after, '^(%d+) ') or '') or nil
if last ~= nil and last <= upto and (after == false or (nxt ~= nil and nxt > upto)) then
  redis.call('LTRIM', KEYS[1], n, -1)
  return n
end
local dropped = 0
while true do
  local v = redis.call('LINDEX', KEYS[1], 0)
  if not v then break end
  local m = tonumber(string.match(v, '^(%d+) '))
  if m == nil or m > upto then break end
  redis.call('LPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
"""
_ADVANCE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
"""
_SET_IF_WRITER = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# KEYS: writer, latest, journal seq; ARGV: token, lease ms, journal seq the server has applied,
# then the 'latest' pointers this server wrote or read. Takes the lease only if nobody holds it
# and 'latest' is one of ours (or gone: Redis lost its data, and this server's memory is the
# newest state there is); numbers later journal entries above what the server has applied.
_RECLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local latest = redis.call('GET', KEYS[2])
if latest then
  local ours = false
  for i = 4, #ARGV do if latest == ARGV[i] then ours = true end end
  if not ours then return {-1, latest} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[3], ARGV[3])
end
return {1, ''}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
_TRIM = """
local upto = tonumber(ARGV[1])
local dropped = 0
while true do
  local v = redis.call('LINDEX', KEYS[1], 0)
  if not v then break end
  local n = tonumber(string.match(v, '^(%d+) '))
  if n == nil or n > upto then break end
  redis.call('LPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
"""


def safe_url(url: str) -> str:
    """``url`` without its password, in the address or the query (for logs and messages)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))
    if parts.query:
        query = [(k, "***" if k.lower() == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        # replaced in place: urlunsplit would turn unix:///path into unix:/path
        head, _, rest = url.partition("?")
        fragment = rest.partition("#")[2]
        url = f"{head}?{urlencode(query, safe='*')}" + (f"#{fragment}" if fragment else "")
    return url


class _RedisReader(CheckpointReader):
    def __init__(self, store: RedisStore, gen: int, chunks: int, size: int, chunk_bytes: int) -> None:
        self._store = store
        self._gen = gen
        self._chunks = chunks
        self._chunk_bytes = chunk_bytes
        self.size = size
        self.where = f"{store.url} key {store.chunk_key(gen, 0)}"

    def where_at(self, offset: int) -> str:
        i = min(offset // self._chunk_bytes, max(self._chunks - 1, 0))
        return f"{self._store.url} key {self._store.chunk_key(self._gen, i)}"

    def read(self, offset: int, size: int) -> bytes:
        out = []
        end = min(offset + size, self.size)
        with self._store.errors("read a checkpoint"):
            while offset < end:
                i, at = divmod(offset, self._chunk_bytes)
                take = min(end - offset, self._chunk_bytes - at)
                data = self._store.r.getrange(self._store.chunk_key(self._gen, i), at, at + take - 1)
                if not isinstance(data, bytes) or len(data) != take:
                    raise CheckpointError(f"checkpoint {self.where_at(offset)}: missing or truncated "
                                          "chunk")
                out.append(data)
                offset += take
        return out[0] if len(out) == 1 else b"".join(out)


class RedisStore(Store):
    """Checkpoints and the watchlist journal under ``prefix`` in the Redis at ``url``."""

    def __init__(self, url: str, prefix: str = "screening:", *, chunk_bytes: int = CHUNK_BYTES,
                 timeout_s: float = 10.0, lease_s: float = 30.0) -> None:
        if not 1 <= chunk_bytes <= CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{CHUNK_BYTES}")
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.lease_s = lease_s
        self._lease_ms = int(lease_s * 1000)
        # set by claim_writer and never cleared: once the lease is lost or released the token
        # matches nothing, so every conditional write is refused ('' = never claimed: unchecked)
        self._token = ""
        self._held = False
        self.url = safe_url(url)
        self.prefix = prefix
        self.location = f"redis {self.url} prefix {prefix!r}"
        self.chunk_bytes = chunk_bytes
        self.r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=min(timeout_s, 3.0),
            retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2))
        # the lease's own connection: a short timeout and no retries (the lease thread retries),
        # so a Redis that stopped answering is noticed well within the lease
        quick = min(lease_s / 6, 2.0, timeout_s)
        self._lease_r = redis.Redis.from_url(url, socket_timeout=quick,
                                             socket_connect_timeout=quick,
                                             retry=Retry(NoBackoff(), 0))
        # 'latest' pointers this server wrote (or tried to) or read: re-claiming is safe while
        # 'latest' is still one of them
        self._pointers: list[bytes] = []
        self._append = self.r.register_script(_APPEND)
        self._trim = self.r.register_script(_TRIM)
        self._advance = self.r.register_script(_ADVANCE)
        self._set_if_writer = self.r.register_script(_SET_IF_WRITER)
        self._renew = self._lease_r.register_script(_RENEW)
        self._reclaim = self._lease_r.register_script(_RECLAIM)
        self._release = self.r.register_script(_RELEASE)
        self._append_events = self.r.register_script(_APPEND_EVENTS)
        self._trim_events = self.r.register_script(_TRIM_EVENTS)

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """redis-py's errors -> StoreUnavailable naming the server and what failed."""
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable(f"storage {self.location}: cannot {action}: {exc}") from exc

    def chunk_key(self, gen: int, i: int) -> str:
        return f"{self.prefix}ckpt:{gen}:{i}"

    @property
    def _latest(self) -> str:
        return f"{self.prefix}ckpt:latest"

    # ------------------------------------------------------------------ the writer
    @property
    def _writer(self) -> str:
        return f"{self.prefix}writer"

    def claim_writer(self, owner: str) -> None:
        token = f"{owner} {secrets.token_hex(8)}"
        with self.errors("take the writer lease"):
            if self.r.set(self._writer, token, nx=True, px=self._lease_ms):
                self._token = token
                self._held = True
                return
            holder, left_ms = self.r.get(self._writer), self.r.pttl(self._writer)
        text = holder.decode(errors="replace") if isinstance(holder, bytes) else str(holder or "")
        who = text.rsplit(" ", 1)[0] or "unknown"
        raise StoreBusy(f"storage {self.location}: another server writes here ({who}; its lease "
                        f"ends in {max(left_ms, 0) / 1000:.0f} s unless renewed); stop it first, "
                        "or give each server its own [storage] key_prefix")

    def renew_writer(self) -> None:
        if not self._token:
            return
        with self.errors("renew the writer lease"):
            kept = self._renew(keys=[self._writer], args=[self._token, self._lease_ms],
                               client=self._lease_r)
        if not kept:
            self._held = False
            raise StoreBusy(f"storage {self.location}: the writer lease was lost (it expired or "
                            "another server took it); this server no longer writes here")

    def reclaim_writer(self, owner: str, journal_seq: int) -> None:
        token = f"{owner} {secrets.token_hex(8)}"
        with self.errors("take the writer lease back"):
            code, detail = self._reclaim(
                keys=[self._writer, self._latest, f"{self.prefix}journal:seq"],
                args=[token, self._lease_ms, journal_seq, *self._pointers],
                client=self._lease_r)
        if int(code) == 1:
            self._token = token
            self._held = True
            return
        if int(code) == 0:
            text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
            raise StoreBusy(f"storage {self.location}: another server took the store while this "
                            f"one could not reach it ({text.rsplit(' ', 1)[0] or 'unknown'})")
        raise StoreBusy(f"storage {self.location}: another server wrote a checkpoint here while "
                        "this one could not reach it; this server's state is older")

    def release_writer(self) -> None:
        if self._held:
            self._held = False
            with contextlib.suppress(redis.RedisError):
                self._release(keys=[self._writer], args=[self._token])

    def _note_pointer(self, pointer: bytes) -> None:
        """Remember a 'latest' pointer of ours (the last two: written or read, and tried)."""
        self._pointers = [*self._pointers[-1:], pointer]

    def _lost(self, action: str) -> StoreBusy:
        return StoreBusy(f"storage {self.location}: cannot {action}: this server no longer holds "
                         "the writer lease")

    def check(self) -> None:
        with self.errors("reach the server"):
            self.r.ping()

    # ------------------------------------------------------------------ checkpoints
    def write_checkpoint(self, pieces: Iterable[Piece]) -> str:
        with self.errors("write a checkpoint"):
            gen = int(self.r.incr(f"{self.prefix}ckpt:gen"))
        written = size = 0
        switching = False
        try:
            with self.errors("write a checkpoint"):
                for chunk in _chunks(pieces, self.chunk_bytes):
                    self.r.set(self.chunk_key(gen, written), chunk)
                    written += 1
                    size += chunk.nbytes
                # "id": no two pointers are alike, even when Redis lost its data and counts
                # generations from 1 again (re-claiming compares pointers)
                pointer = json.dumps({"gen": gen, "chunks": written, "size": size,
                                      "chunk_bytes": self.chunk_bytes,
                                      "id": secrets.token_hex(8)})
                # noted before it is sent: a switch that happened but whose answer was lost
                # (a timeout) still counts as ours when the lease is re-claimed
                self._note_pointer(pointer.encode())
                switching = True
                if not self._set_if_writer(keys=[self._writer, self._latest],
                                           args=[self._token, pointer]):
                    switching = False
                    raise self._lost("write a checkpoint")
        except BaseException:
            # chunks that 'latest' may already name (the switch's answer was lost) stay; the
            # next successful write deletes them with the other older generations
            if written and not switching:
                with contextlib.suppress(redis.RedisError):
                    self.r.unlink(*(self.chunk_key(gen, i) for i in range(written)))
            raise
        with contextlib.suppress(redis.RedisError):
            self._drop_older_generations(gen)
        return f"{self.url} key {self.chunk_key(gen, 0)}"

    def _drop_older_generations(self, keep: int) -> None:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "ckpt:*:*"
        batch: list[Any] = []
        for key in self.r.scan_iter(match=pattern, count=1000):
            gen = key[len(self.prefix.encode()) + 5:].split(b":", 1)[0]
            if gen.isdigit() and int(gen) < keep:
                batch.append(key)
            if len(batch) >= 500:
                self.r.unlink(*batch)
                batch = []
        if batch:
            self.r.unlink(*batch)

    def open_checkpoint(self) -> CheckpointReader | None:
        with self.errors("read the latest checkpoint pointer"):
            raw = self.r.get(self._latest)
        if raw is None:
            return None
        if isinstance(raw, bytes):
            self._note_pointer(raw)
        try:
            p = json.loads(raw)
            gen, chunks, size, chunk_bytes = (int(p[k]) for k in ("gen", "chunks", "size",
                                                                   "chunk_bytes"))
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint pointer {self.url} key {self._latest}: "
                                  f"malformed ({exc})") from None
        if chunk_bytes < 1 or chunks < 0 or size < 0:
            raise CheckpointError(f"checkpoint pointer {self.url} key {self._latest}: malformed")
        return _RedisReader(self, gen, chunks, size, chunk_bytes)

    # ------------------------------------------------------------------ policies
    def save_policy(self, version: str, text: str) -> None:
        with self.errors("keep the policy"):
            self.r.hset(f"{self.prefix}policies", version, text.encode())

    def load_policy(self, version: str) -> str | None:
        with self.errors("read a kept policy"):
            raw = self.r.hget(f"{self.prefix}policies", version)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    # ------------------------------------------------------------------ journal
    def append_journal(self, entry: bytes) -> int:
        with self.errors("append to the watchlist journal"):
            seq = int(self._append(keys=[f"{self.prefix}journal:seq", f"{self.prefix}journal",
                                         self._writer], args=[entry, self._token]))
        if seq < 0:
            raise self._lost("append to the watchlist journal")
        return seq

    def advance_journal(self, seq: int) -> None:
        with self.errors("number the watchlist journal"):
            self._advance(keys=[f"{self.prefix}journal:seq"], args=[seq])

    def read_journal(self, after: int = 0) -> list[tuple[int, bytes]]:
        with self.errors("read the watchlist journal"):
            raw = self.r.lrange(f"{self.prefix}journal", 0, -1)
        out = []
        for i, item in enumerate(raw):
            item = item if isinstance(item, bytes) else str(item).encode()
            seq_s, _, entry = item.partition(b" ")
            if not seq_s.isdigit():
                raise CheckpointError(f"watchlist journal {self.url} key {self.prefix}journal: "
                                      f"entry {i} is malformed")
            if int(seq_s) > after:
                out.append((int(seq_s), entry))
        return out

    def trim_journal(self, upto: int) -> int:
        with self.errors("trim the watchlist journal"):
            return int(self._trim(keys=[f"{self.prefix}journal"], args=[upto]))

    # ------------------------------------------------------------------ event journal
    def append_events(self, entries: Sequence[tuple[int, bytes]], *, sync: bool) -> None:
        """One script call per batch (the claim checked in it); as durable as the Redis server
        is configured to be (``sync`` has no say here)."""
        if not entries:
            return
        with self.errors("append to the event journal"):
            n = int(self._append_events(keys=[f"{self.prefix}events", self._writer],
                                        args=[self._token, *(b"%d %s" % (s, e) for s, e in entries)]))
        if n < 0:
            raise self._lost("append to the event journal")

    def sync_events(self) -> None:
        return None

    def read_events(self, after: int = 0) -> list[tuple[int, bytes]]:
        with self.errors("read the event journal"):
            raw = self.r.lrange(f"{self.prefix}events", 0, -1)
        out: list[tuple[int, bytes]] = []
        for i, item in enumerate(raw):
            item = item if isinstance(item, bytes) else str(item).encode()
            seq_s, _, entry = item.partition(b" ")
            if not seq_s.isdigit() or (out and int(seq_s) <= out[-1][0]):
                raise CheckpointError(f"event journal {self.url} key {self.prefix}events: "
                                      f"entry {i} is malformed or out of order")
            if int(seq_s) > after:
                out.append((int(seq_s), entry))
        return out

    def trim_events(self, upto: int) -> int:
        with self.errors("trim the event journal"):
            return int(self._trim_events(keys=[f"{self.prefix}events"], args=[upto]))

    def close(self) -> None:
        self.release_writer()
        with contextlib.suppress(redis.RedisError):
            self.r.close()
            self._lease_r.close()


def _chunks(pieces: Iterable[Piece], size: int) -> Iterator[memoryview]:
    """The concatenation of ``pieces`` cut into chunks of ``size`` bytes (the last shorter)."""
    buf = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        while len(view):
            if not buf and len(view) >= size:
                yield view[:size]  # a whole chunk straight from the piece, uncopied
                view = view[size:]
                continue
            take = min(size - len(buf), len(view))
            buf += view[:take]
            view = view[take:]
            if len(buf) == size:
                yield memoryview(buf)
                buf = bytearray()
    if buf:
        yield memoryview(buf)
