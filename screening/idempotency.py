"""Idempotency: which remembered decision a transaction id names, and whether a request repeats it.

A transaction id belongs to the institution that sent it: ids are remembered per **scope**, the
calling institution (the caller's name in the tokens file; ``DEFAULT_SCOPE`` with auth off), so
another caller's id never matches. And an id is bound to its payment: each decision keeps a
16-byte **fingerprint** of the validated request, so a repeat with the same id and the same
content is answered with the first decision (an idempotent retry), and the same id with other
content is refused (``Conflict``, naming the field that differs) instead of being answered with
another payment's decision.

The fingerprint is 8 bytes of BLAKE2b over every screened field (the binding: two payments are
the same when their digests are; a different payment matches by chance one time in 2**64, and
finding one that does takes about 2**64 hashes) followed by one byte per field group (a CRC32
residue: only a hint, used to name the differing group in the refusal). Payer, payee and event
time are kept in the record itself and compared exactly. It is computed before the engine's
lock is taken.
"""

from __future__ import annotations

import struct
import zlib
from hashlib import blake2b

import numpy as np

from screening.model import DecisionRecord, TxnColumns, TxnInput

__all__ = ["DEFAULT_SCOPE", "FINGERPRINT_BYTES", "differing_field", "differing_input", "fingerprint",
           "fingerprints", "same_fingerprint", "same_payment"]

#: the one scope of a server without auth, of replays and of checkpoints written before scopes
DEFAULT_SCOPE = ""
FINGERPRINT_BYTES = 16
_DIGEST_BYTES = 8
_INTS = struct.Struct("<8q")
# the field groups a hint byte stands for, in order (names as in the Transaction message)
_GROUPS = ("payer", "payee", "amount", "channel", "cash or cross_border", "device_id",
           "payer_phone", "memo")


def fingerprint(t: TxnInput) -> bytes:
    """The fingerprint of a validated transaction (``FINGERPRINT_BYTES`` long).

    Validated text holds no control characters, so the separators make the encoding unambiguous.
    The hint bytes are residues mod 251 of a CRC32 (text) plus the integer fields of the group.
    """
    p, q = t.payer, t.payee
    po = -1 if p.opened_ms is None else p.opened_ms
    qo = -1 if q.opened_ms is None else q.opened_ms
    flags = t.cash | t.cross_border << 1
    texts = "\x1f".join((p.account_id, q.account_id, p.institution, q.institution, t.currency,
                         t.device_id, t.payer_phone, t.memo)).encode()
    ints = _INTS.pack(t.event_time_ms, p.party_type, po, q.party_type, qo, t.amount_minor,
                      t.channel, flags)
    _, _, pi, qi, cur, dev, phone, memo = texts.split(b"\x1f")
    crc = zlib.crc32
    return blake2b(ints + texts, digest_size=_DIGEST_BYTES).digest() + bytes((
        (crc(pi) + 3 * p.party_type + po) % 251, (crc(qi) + 3 * q.party_type + qo) % 251,
        (crc(cur) + t.amount_minor) % 251, t.channel % 251, flags,
        crc(dev) % 251, crc(phone) % 251, crc(memo) % 251))


def fingerprints(c: TxnColumns) -> list[bytes]:
    """``fingerprint`` of every transaction of ``c``: the same bytes, the hint bytes computed
    column by column (one CRC per distinct text)."""
    n = len(c)
    if n <= 1:  # ScreenTransaction: numpy calls cost more than they save
        return [fingerprint(t) for t in c.rows()]

    def crcs(col: list[str]) -> np.ndarray:
        table = {v: zlib.crc32(v.encode()) for v in set(col)}
        return np.fromiter(map(table.__getitem__, col), dtype=np.int64, count=n)

    def ints(col: list[int]) -> np.ndarray:
        return np.fromiter(col, dtype=np.int64, count=n)

    po = [-1 if o is None else o for o in c.payer_opened_ms]
    qo = [-1 if o is None else o for o in c.payee_opened_ms]
    flags = [cash | cross << 1 for cash, cross in zip(c.cash, c.cross_border, strict=True)]
    pt, qt, minor = ints(c.payer_type), ints(c.payee_type), ints(c.amount_minor)
    hints = np.empty((n, len(_GROUPS)), dtype=np.int64)
    hints[:, 0] = crcs(c.payer_institution) + 3 * pt + ints(po)
    hints[:, 1] = crcs(c.payee_institution) + 3 * qt + ints(qo)
    hints[:, 2] = crcs(c.currency) + minor
    hints[:, 3] = ints(c.channel)
    hints[:, 5] = crcs(c.device_id)
    hints[:, 6] = crcs(c.payer_phone)
    hints[:, 7] = crcs(c.memo)
    hints %= 251
    hints[:, 4] = flags
    tail = hints.astype(np.uint8).tobytes()
    pack, digest, sep = _INTS.pack, blake2b, "\x1f".join
    return [digest(pack(ms, a_t, a_o, b_t, b_o, m, ch, f)
                   + sep((pa, qa, pi, qi, cur, dev, phone, memo)).encode(),
                   digest_size=_DIGEST_BYTES).digest() + tail[8 * j:8 * j + 8]
            for j, (ms, a_t, a_o, b_t, b_o, m, ch, f, pa, qa, pi, qi, cur, dev, phone, memo)
            in enumerate(zip(c.event_time_ms, c.payer_type, po, c.payee_type, qo,
                             c.amount_minor, c.channel, flags, c.payer_account, c.payee_account,
                             c.payer_institution, c.payee_institution, c.currency, c.device_id,
                             c.payer_phone, c.memo, strict=True))]


def same_fingerprint(a: bytes, b: bytes) -> bool:
    """Whether two fingerprints are of the same payment (their digests agree; the hint bytes
    only name fields)."""
    return a[:_DIGEST_BYTES] == b[:_DIGEST_BYTES]


def same_payment(rec: DecisionRecord, t: TxnInput, fp: bytes) -> bool:
    """Whether ``t`` (fingerprint ``fp``) repeats the payment ``rec`` was decided for.

    A record restored from a checkpoint written before fingerprints (format 1) has none: then
    payer, payee and event time, which the record holds, must match.
    """
    if rec.fingerprint:
        return same_fingerprint(rec.fingerprint, fp)
    return (rec.payer, rec.payee, rec.event_time_ms) == (t.payer.account_id, t.payee.account_id,
                                                         t.event_time_ms)


def differing_field(rec: DecisionRecord, t: TxnInput, fp: bytes) -> str:
    """The field (group) of ``t`` that differs from the payment of ``rec``, for a refusal (the
    first of payer, payee, amount, event_time, then the others); a generic phrase when the hint
    bytes cannot tell (one chance in 251 per group)."""
    if rec.payer != t.payer.account_id:
        return "payer"
    if rec.payee != t.payee.account_id:
        return "payee"
    old = rec.fingerprint[_DIGEST_BYTES:]
    hinted = [name for name, a, b in zip(_GROUPS, old, fp[_DIGEST_BYTES:], strict=False) if a != b]
    if len(old) != len(_GROUPS):
        hinted = []
    for name in ("payer", "payee", "amount"):
        if name in hinted:
            return name
    if rec.event_time_ms != t.event_time_ms:
        return "event_time"
    return hinted[0] if hinted else "another field"


def differing_input(a: TxnInput, b: TxnInput) -> str:
    """The first field (group) in which two transactions differ, in ``differing_field``'s order
    (both at hand: exact)."""
    checks = (("payer", a.payer == b.payer), ("payee", a.payee == b.payee),
              ("amount", (a.amount_minor, a.currency) == (b.amount_minor, b.currency)),
              ("event_time", a.event_time_ms == b.event_time_ms),
              ("channel", a.channel == b.channel),
              ("cash or cross_border", (a.cash, a.cross_border) == (b.cash, b.cross_border)),
              ("device_id", a.device_id == b.device_id),
              ("payer_phone", a.payer_phone == b.payer_phone), ("memo", a.memo == b.memo))
    return next((name for name, same in checks if not same), "another field")
