"""Settings: frozen dataclasses built once from a TOML file plus environment overrides.

Precedence: built-in defaults < config file (``--config FILE`` or ``SCREENING_CONFIG``) <
environment ``SCREENING_<SECTION>__<KEY>`` (e.g. ``SCREENING_SERVER__PORT=50052``) < explicit
command-line flags. Unknown sections or keys are errors, so a typo cannot silently do nothing.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screening.errors import ConfigError

if TYPE_CHECKING:
    from graph.live import GraphParams

__all__ = [
    "DEFAULT_CURRENCIES",
    "AuditSettings",
    "AuthSettings",
    "Currency",
    "FlightSettings",
    "GraphSettings",
    "LedgerSettings",
    "LimitSettings",
    "LogSettings",
    "MetricsSettings",
    "PolicySettings",
    "ServerSettings",
    "Settings",
    "StateSettings",
    "StorageSettings",
    "TlsSettings",
    "load_settings",
    "render_settings",
    "settings_sources",
    "toml_string",
]

ENV_PREFIX = "SCREENING_"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where the server listens and how much it takes on (see ``screening.lanes``).

    Unary screening calls (ScreenTransaction, ScreenBatch, ReportCall) run on ``max_workers``
    threads with at most ``max_queue`` more waiting; past that a call is refused
    RESOURCE_EXHAUSTED at once. Each open ScreenStream holds a thread of its own, apart from
    those, up to ``max_streams``. Health checks have their own threads.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    # Two threads: the engine's lock and the GIL serialise screening anyway, and more threads
    # only contend for the GIL with grpc's polling thread (bench/results/overload.json). Under a
    # steady overload the queue only adds latency to what is admitted; it is there for bursts
    # and stalls: 32 waiting is about 30 ms of work.
    max_workers: int = 2
    max_queue: int = 32
    # Calls grpc's core holds before any thread takes them (it hands the threaded server one at
    # a time, and under overload the polling thread waits for the GIL): past this the core
    # itself refuses at once (the client sees CANCELLED: the stream is reset), so an admitted
    # call never waits behind a long backlog. At 2x and 5x capacity admitted p99 was 39 / 38 ms
    # with 16, 65 / 73 ms with 64, 196 / 178 ms with 256 and 1 s (every call timing out) with
    # grpc's own limits (0: 1,000, refusing at random up to 3,000); bench/results/overload-pending-*.json.
    max_pending: int = 16
    max_streams: int = 64
    # open ScreenStreams of one caller (institution) at most, so one cannot hold every place
    # with idle streams; 0: half of max_streams
    max_streams_per_caller: int = 0
    grace_seconds: float = 5.0
    max_message_bytes: int = 32 * 1024 * 1024
    # Decisions must come back within this budget; analysis that would exceed it is skipped
    # and the decision is marked degraded.
    latency_budget_ms: float = 5.0

    def __post_init__(self) -> None:
        for key, low in (("max_workers", 1), ("max_queue", 0), ("max_pending", 0), ("max_streams", 1),
                         ("max_streams_per_caller", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"[server] {key} must be >= {low}")
        if not self.grace_seconds >= 0:
            raise ConfigError("[server] grace_seconds must be >= 0")

    @property
    def streams_per_caller(self) -> int:
        """Open ScreenStreams one caller may hold (``max_streams_per_caller``, 0: half)."""
        return self.max_streams_per_caller or max(1, self.max_streams // 2)


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    max_id_length: int = 64
    max_text_length: int = 128
    max_memo_length: int = 512
    max_future_skew_seconds: int = 300
    min_event_time: str = "2000-01-01"
    max_amount_minor: int = 10**15
    max_batch: int = 10_000

    def __post_init__(self) -> None:
        # event times must stay within what the state and the replies hold (years 1 to 9999)
        if not 0 <= self.max_future_skew_seconds <= 366 * 86_400:
            raise ConfigError("[limits] max_future_skew_seconds must be in 0..31622400 (a year)")


@dataclass(frozen=True, kw_only=True)
class StateSettings:
    """Entity state: starting sizes and caps (see README, "Memory").

    ``max_accounts``, ``max_phones`` and ``max_devices`` at 0 are derived at start from the
    memory available then (``screening.memory``): the largest counts whose state fits in
    ``memory_fraction`` of it; an explicit cap that does not fit stops start-up. At a cap, the
    ``evict_fraction`` least recently seen entities of that kind (never a watchlisted one) are
    forgotten to make room for new ones.
    """

    initial_accounts: int = 65_536
    max_accounts: int = 0
    initial_phones: int = 16_384
    max_phones: int = 0
    initial_devices: int = 16_384
    max_devices: int = 0
    initial_pairs: int = 262_144
    # Transaction ids remembered for idempotency (the dedup horizon).
    dedup_capacity: int = 1_000_000
    recent_decisions_per_account: int = 8
    # Share of the memory available at start the state may take (derived caps, and the check of
    # explicit ones).
    memory_fraction: float = 0.6
    # Share of a cap evicted at once when it is reached (the coldest entities of that kind).
    evict_fraction: float = 0.01

    def __post_init__(self) -> None:
        for kind in ("accounts", "phones", "devices"):
            if getattr(self, f"initial_{kind}") < 1 or getattr(self, f"max_{kind}") < 0:
                raise ConfigError(f"[state] initial_{kind} must be >= 1 and max_{kind} >= 0 "
                                  "(0: derived from memory)")
        if not 0.0 < self.memory_fraction <= 1.0:
            raise ConfigError("[state] memory_fraction must be in (0, 1]")
        if not 0.0 < self.evict_fraction <= 0.5:
            raise ConfigError("[state] evict_fraction must be in (0, 0.5]")


@dataclass(frozen=True, kw_only=True)
class LedgerSettings:
    """The daily report ledger (large-value reports): every screened transaction of the last
    ``days`` local days (ending at the newest day seen), at most ``max_rows`` of them (64 bytes
    of columns per row plus its transaction id); when full, the oldest day goes early and is
    no longer reportable."""

    days: int = 7
    max_rows: int = 10_000_000

    def __post_init__(self) -> None:
        if not 1 <= self.days <= 366:
            raise ConfigError("[ledger] days must be in 1..366")
        if not 1 <= self.max_rows <= 2**31:
            raise ConfigError("[ledger] max_rows must be in 1..2147483648")


@dataclass(frozen=True, kw_only=True)
class GraphSettings:
    """The live transaction graph: detector windows and bounds, memory, case exports.

    Every search is bounded: hops/length, ``hub_degree`` (nodes with more distinct
    counterparties are not expanded; the cut is recorded), ``max_work`` edge-list entries per
    detector and transaction, and its time window. Edges older than ``expiry_days`` go when
    room is needed; at most ``max_edges`` edges are held (BYTES_PER_EDGE each, see README).
    """

    enabled: bool = True
    fan_window_days: float = 7.0
    scatter_gather_window_days: float = 7.0
    cycle_window_days: float = 30.0
    cycle_max_length: int = 6
    # Cycles must run forward in time (each transfer no earlier than the one before it).
    cycle_time_ordered: bool = True
    # Cycles count only when each transfer keeps at least this share of the one before it
    # (min/max of consecutive amounts); the search does not follow paths below it.
    cycle_min_ratio: float = 0.8
    chain_gap_minutes: float = 60.0
    chain_max_hops: int = 6
    # A chain hop passes on between these multiples of what arrived (out / in).
    chain_min_ratio: float = 0.1
    chain_max_ratio: float = 1.05
    fund_window_days: float = 90.0
    # "Small" fundraising payers paid at most this much in one transfer (fen).
    fund_small_max_fen: int = 10_000_000
    # Pyramid fee trees: fee receipts of the payee in this window; its pieces passed on to one
    # account count when sent within fee_forward_hours after a receipt. Entry fees are a fixed
    # price and a transfer credits the payee what the payer sent (fees are charged on top), so
    # fees match to the fen (tolerance 0); a tolerance (a share of the amount, at most 0.1)
    # lets payments through channels that deduct a charge match too.
    fee_window_days: float = 60.0
    fee_forward_hours: float = 24.0
    fee_amount_tolerance: float = 0.0
    proximity_window_days: float = 90.0
    proximity_max_hops: int = 2
    hub_degree: int = 50
    fan_cap: int = 100
    max_work: int = 1_000
    link_refresh_hours: float = 24.0
    expiry_days: float = 180.0
    initial_edges: int = 262_144
    max_edges: int = 67_108_864
    # Case-graph exports (ExportCaseGraph / `screening case export`).
    export_max_hops: int = 4
    export_max_nodes: int = 2_000
    export_default_nodes: int = 300
    export_max_days: float = 366.0
    export_max_edges: int = 50_000
    export_max_work: int = 2_000_000
    # An export whose files would be larger is refused before it is built (at most [server]
    # max_message_bytes less room for the summary); rendering time grows with the bytes.
    export_max_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        try:
            params = self.params()
        except ValueError as exc:
            raise ConfigError(f"[graph] {str(exc).replace('GraphParams.', '')}") from None
        if self.expiry_days * 86_400_000 < params.longest_window_ms:
            raise ConfigError("[graph] expiry_days must cover the longest detector window")
        if not 1 <= self.export_max_hops <= 6 or not 1 <= self.export_default_nodes <= self.export_max_nodes:
            raise ConfigError("[graph] export_max_hops must be 1..6 and "
                              "1 <= export_default_nodes <= export_max_nodes")
        if self.export_max_bytes < 1:
            raise ConfigError("[graph] export_max_bytes must be > 0")
        if self.initial_edges < 16 or self.max_edges < self.initial_edges or self.max_edges >= 2**31 - 1:
            raise ConfigError("[graph] need 16 <= initial_edges <= max_edges < 2**31")

    def params(self) -> GraphParams:
        """The detectors' ``graph.live.GraphParams``."""
        from graph.live import GraphParams

        day, minute = 86_400_000, 60_000
        return GraphParams(
            fan_window_ms=round(self.fan_window_days * day),
            scatter_gather_window_ms=round(self.scatter_gather_window_days * day),
            cycle_window_ms=round(self.cycle_window_days * day),
            cycle_max_length=self.cycle_max_length,
            cycle_time_ordered=self.cycle_time_ordered,
            cycle_min_ratio=self.cycle_min_ratio,
            chain_gap_ms=round(self.chain_gap_minutes * minute),
            chain_max_hops=self.chain_max_hops,
            chain_min_ratio=self.chain_min_ratio,
            chain_max_ratio=self.chain_max_ratio,
            fund_window_ms=round(self.fund_window_days * day),
            fund_small_max=self.fund_small_max_fen,
            fee_window_ms=round(self.fee_window_days * day),
            fee_forward_gap_ms=round(self.fee_forward_hours * 3_600_000),
            fee_amount_tolerance=self.fee_amount_tolerance,
            proximity_window_ms=round(self.proximity_window_days * day),
            proximity_max_hops=self.proximity_max_hops,
            hub_degree=self.hub_degree,
            fan_cap=self.fan_cap,
            max_work=self.max_work,
            link_refresh_ms=round(self.link_refresh_hours * 3_600_000),
        )

    @property
    def expiry_ms(self) -> int:
        return round(self.expiry_days * 86_400_000)


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    # When false every caller is admin: for local development only (logged loudly), and then
    # the server binds only a loopback address unless ``allow_insecure_bind`` is set.
    enabled: bool = True
    allow_insecure_bind: bool = False
    # TOML file mapping sha256(token) hex -> role; see ``screening token``.
    tokens_file: str = ""
    # After ``max_failures`` failed token attempts from one address within ``block_seconds``,
    # every call from that address is refused for ``block_seconds`` (doubling with each repeat,
    # at most an hour). 0 switches this off.
    max_failures: int = 10
    block_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_failures < 0:
            raise ConfigError("[auth] max_failures must be >= 0 (0: no throttling)")
        if not 0 < self.block_seconds <= 3600:
            raise ConfigError("[auth] block_seconds must be in (0, 3600]")


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """TLS on the gRPC port (``screening.tls``), and mutual TLS with ``client_ca_file``.

    ``cert_file`` (PEM, the server's certificate chain) and ``key_file`` (its PEM private key)
    switch TLS on. ``client_ca_file`` (PEM CA certificates) makes it mutual: every client must
    present a certificate signed by one of them, and the certificate says who calls (subject
    OU = role, CN = caller name, O = institution of a bank or payment institution; see
    ``screening.auth``); bearer tokens are not used then. (grpcio either requires and verifies
    client certificates or does not ask for them, so the CA alone says which.) ``crl_file`` (a
    PEM certificate revocation list signed by that CA) refuses the client certificates it lists;
    the server re-reads it when it changes and on SIGHUP. Without a
    certificate the port is plaintext: only on a loopback host, unless ``allow_plaintext``
    (e.g. behind a proxy that terminates TLS); either way logged as a warning.
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    crl_file: str = ""
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("[tls] cert_file and key_file: give both (the server's certificate "
                              "and its private key) or neither")
        if self.client_ca_file and not self.cert_file:
            raise ConfigError("[tls] client_ca_file: mutual TLS needs the server's cert_file and "
                              "key_file too")
        if self.crl_file and not self.client_ca_file:
            raise ConfigError("[tls] crl_file: revokes client certificates, so it needs "
                              "client_ca_file (mutual TLS)")
        if self.allow_plaintext and self.cert_file:
            raise ConfigError("[tls] allow_plaintext: the port serves TLS only when cert_file is "
                              "set; drop one of them")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    level: str = "info"
    # "json" for machines, "console" for people.
    format: str = "json"
    # Key for the keyed hash in masked identifiers; empty means a random per-process key.
    mask_key: str = ""


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    """Prometheus metrics over HTTP at ``http://host:port/metrics`` (``screening.metrics``).
    Off while ``port`` is 0; on its own port, apart from the gRPC one, and on loopback by
    default: the page names no customer, but says how busy the service is."""

    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65_535:
            raise ConfigError("[metrics] port must be in 0..65535 (0: off)")


@dataclass(frozen=True, kw_only=True)
class FlightSettings:
    """The Arrow Flight bulk endpoint (``screening.flight``: ``DoExchange`` of record batches),
    beside the gRPC port, with its tokens and roles and, when ``[tls]`` gives the server a
    certificate, its TLS. Off while ``port`` is -1 (the default); 0 takes any free port (logged).
    ``host`` empty: the gRPC server's host. Needs ``pyarrow.flight`` (the ``flight`` extra)."""

    port: int = -1
    host: str = ""

    def __post_init__(self) -> None:
        if not -1 <= self.port <= 65_535:
            raise ConfigError("[flight] port must be in -1..65535 (-1: off, 0: any free port)")

    @property
    def enabled(self) -> bool:
        return self.port >= 0


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    # Empty means the default policy shipped in the package.
    file: str = ""
    # Candidate policies decided beside the active one on live transactions and calls, never answered
    # (comma-separated files); see `screening shadow report`.
    shadow_files: str = ""
    # Where their would-be decisions go (JSON lines); empty: counted in the metrics only.
    shadow_log: str = ""

    def shadow_paths(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.shadow_files.split(",") if p.strip())


STORAGE_BACKENDS = ("none", "file", "redis")


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Where the engine's state survives a restart (see README, "Durable state").

    ``none`` keeps everything in the process only; ``file`` writes checkpoints and the
    watchlist journal under ``path``; ``redis`` writes them under ``key_prefix`` in the Redis at
    ``redis_url``. A checkpoint is written every ``checkpoint_interval_s`` (0: only at shutdown).
    One server writes to a store at a time; with Redis its claim lasts ``lease_s`` unless
    renewed (a file store's claim is a lock that ends with the process). A starting server waits
    up to ``claim_wait_s`` for the holder to let go before it gives up. With ``journal_events``
    every accepted transaction and call is in the store's event journal before it is answered.
    """

    backend: str = "none"
    path: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "screening:"
    checkpoint_interval_s: float = 300.0
    lease_s: float = 30.0
    claim_wait_s: float = 45.0
    # the event journal: every accepted transaction and call, written (group commit) before it
    # is answered; fsync after every batch, every ``journal_fsync_interval_ms``, or never
    # (the OS writes it back: survives a process crash, not a machine crash)
    journal_events: bool = True
    journal_fsync: str = "batch"
    journal_fsync_interval_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.journal_fsync not in JOURNAL_FSYNC:
            raise ConfigError(f"[storage] journal_fsync: expected one of {', '.join(JOURNAL_FSYNC)}, "
                              f"got {self.journal_fsync!r}")
        if not self.journal_fsync_interval_ms > 0:
            raise ConfigError("[storage] journal_fsync_interval_ms must be > 0")
        if self.backend not in STORAGE_BACKENDS:
            raise ConfigError(f"[storage] backend: expected one of {', '.join(STORAGE_BACKENDS)}, "
                              f"got {self.backend!r}")
        if self.backend == "file" and not self.path:
            raise ConfigError("[storage] path: the file backend needs a directory")
        if self.backend == "redis" and not self.redis_url.startswith(("redis://", "rediss://",
                                                                       "unix://")):
            raise ConfigError("[storage] redis_url: expected redis://, rediss:// or unix://")
        if self.checkpoint_interval_s < 0:
            raise ConfigError("[storage] checkpoint_interval_s must be >= 0")
        if not self.lease_s > 0:
            raise ConfigError("[storage] lease_s must be > 0")
        if not self.claim_wait_s >= 0:
            raise ConfigError("[storage] claim_wait_s must be >= 0")


AUDIT_FSYNC = ("batch", "rotate")
JOURNAL_FSYNC = ("batch", "interval", "none")


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    """The audit trail (``screening.audit``): every decision, watchlist change, feedback, query
    and export, identifiers in clear, in hash-chained JSON-lines files under ``dir``. Off while
    ``dir`` is empty (the directory is the operator's choice, as is its retention).

    A writer thread takes what the request threads queued at least every ``flush_interval_ms``
    (or at ``batch_max`` records), writes it in one write and, with ``fsync = "batch"``, fsyncs
    it before the next batch (``"rotate"``: only when a file is closed). A file is closed and
    the next one begun past ``rotate_bytes`` (0: no size limit) and, with ``rotate_daily``, at
    each UTC midnight. An anchor record (count and chain head, also logged as
    ``audit_anchor``) is written every ``anchor_interval_s`` with new records, at each rotation
    and at stop. When ``max_pending`` records wait for the writer, a call waits up to
    ``block_ms`` for room, then is refused UNAVAILABLE before it changes anything: the service
    never decides what it cannot record.
    """

    dir: str = ""
    rotate_bytes: int = 64 * 1024 * 1024
    rotate_daily: bool = True
    flush_interval_ms: float = 200.0
    batch_max: int = 4096
    fsync: str = "batch"
    anchor_interval_s: float = 60.0
    max_pending: int = 100_000
    block_ms: float = 200.0

    def __post_init__(self) -> None:
        if self.fsync not in AUDIT_FSYNC:
            raise ConfigError(f"[audit] fsync: expected one of {', '.join(AUDIT_FSYNC)}, got "
                              f"{self.fsync!r}")
        if self.rotate_bytes < 0:
            raise ConfigError("[audit] rotate_bytes must be >= 0 (0: no size limit)")
        if not 1 <= self.flush_interval_ms <= 60_000:
            raise ConfigError("[audit] flush_interval_ms must be in 1..60000")
        if self.batch_max < 1 or self.max_pending < 1:
            raise ConfigError("[audit] batch_max and max_pending must be >= 1")
        if not self.anchor_interval_s > 0:
            raise ConfigError("[audit] anchor_interval_s must be > 0")
        if not 0 <= self.block_ms <= 10_000:
            raise ConfigError("[audit] block_ms must be in 0..10000")


@dataclass(frozen=True)
class Currency:
    """ISO 4217 currency with a conversion rate to CNY fen (integer, parts per million)."""

    code: str
    # CNY fen per minor unit of this currency, times 1,000,000.
    fen_per_minor_ppm: int

    def to_fen(self, minor: int) -> int:
        """Round-half-up integer conversion: money never passes through float."""
        return (minor * self.fen_per_minor_ppm + 500_000) // 1_000_000


# Reference rates for screening thresholds only (not for settlement); override in config.
DEFAULT_CURRENCIES: Mapping[str, int] = types.MappingProxyType({
    "CNY": 1_000_000,
    "USD": 7_100_000,
    "EUR": 7_700_000,
    "GBP": 9_000_000,
    "HKD": 910_000,
    "JPY": 4_700_000,  # JPY has no minor unit: 1 yen = 4.7 fen
    "SGD": 5_300_000,
    "MOP": 880_000,
})


@dataclass(frozen=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    state: StateSettings = field(default_factory=StateSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    flight: FlightSettings = field(default_factory=FlightSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    currencies: Mapping[str, int] = field(default_factory=lambda: DEFAULT_CURRENCIES)

    def currency(self, code: str) -> Currency | None:
        ppm = self.currencies.get(code)
        return Currency(code, ppm) if ppm is not None else None


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "limits": LimitSettings,
    "state": StateSettings,
    "auth": AuthSettings,
    "tls": TlsSettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
    "flight": FlightSettings,
    "policy": PolicySettings,
    "graph": GraphSettings,
    "storage": StorageSettings,
    "ledger": LedgerSettings,
    "audit": AuditSettings,
}


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Build Settings from defaults, ``path``, ``env`` and explicit ``overrides`` (in that order)."""
    env = {} if env is None else env
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for section, values in data.items():
            if section != "currencies" and section not in _SECTIONS:
                raise ConfigError(f"{path}: unknown section [{section}]")
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            raw[section] = dict(values)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        if section not in _SECTIONS:
            raise ConfigError(f"environment {name}: unknown section '{section}'")
        raw.setdefault(section, {})[key] = _parse_env(_SECTIONS[section], key, value, name)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})

    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        built[section] = _build(cls, raw.get(section, {}), section)
    currencies = dict(DEFAULT_CURRENCIES)
    for code, ppm in raw.get("currencies", {}).items():
        if not (isinstance(code, str) and len(code) == 3 and code.isupper()):
            raise ConfigError(f"[currencies] {code!r}: not an ISO 4217 code")
        if not isinstance(ppm, int) or isinstance(ppm, bool) or ppm <= 0:
            raise ConfigError(f"[currencies] {code}: rate must be a positive integer (ppm)")
        currencies[code] = ppm
    return Settings(currencies=types.MappingProxyType(currencies), **built)


def _field_types(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build(cls: type[Any], values: Mapping[str, Any], section: str) -> Any:
    types_ = _field_types(cls)
    for key, value in values.items():
        if key not in types_:
            raise ConfigError(f"[{section}] unknown key '{key}' (known: {', '.join(types_)})")
        want = types_[key]
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"[{section}] {key}: expected {want.__name__}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - guarded above
        raise ConfigError(f"[{section}] {exc}") from None


def _parse_env(cls: type[Any], key: str, value: str, name: str) -> Any:
    types_ = _field_types(cls)
    if key not in types_:
        raise ConfigError(f"environment {name}: unknown key '{key}'")
    want = types_[key]
    try:
        if want is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if want is int:
            return int(value)
        if want is float:
            return float(value)
        return value
    except ValueError:
        raise ConfigError(f"environment {name}: expected {want.__name__}, got {value!r}") from None


# -------------------------------------------------------------- showing the effective settings
# Values that must not be printed: the masking key (whoever has it can reverse masked
# identifiers by trying candidates) and a password inside a Redis URL.
_SECRET_KEYS = frozenset({("log", "mask_key")})


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}" if colon else f"{scheme}://***@{host}"


_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def settings_sources(path: Path | None, env: Mapping[str, str],
                     overrides: Mapping[str, Mapping[str, Any]] | None = None
                     ) -> dict[tuple[str, str], str]:
    """Where each non-default value comes from: ``(section, key) -> "file" | "env NAME" | "flag"``
    (the same layers, in the same order, as ``load_settings``; a later layer wins)."""
    sources: dict[tuple[str, str], str] = {}
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is not None:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, values in data.items():
            for key in values if isinstance(values, dict) else ():
                sources[(section, key)] = f"file {path}"
    for name in env:
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
            sources[(section, key)] = f"env {name}"
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                sources[(section, key)] = "command-line flag"
    return sources


def render_settings(settings: Settings, sources: Mapping[tuple[str, str], str] | None = None) -> str:
    """The settings as a TOML file that ``load_settings`` reads back to the same values, each
    value not at its default marked with where it came from; secrets are shown as ``***``
    (so the output can be pasted into a ticket)."""
    sources = sources or {}
    lines = ["# Effective settings: defaults < config file < SCREENING_* environment < flags.",
             "# Secrets are masked (***); a masked file does not reproduce them."]
    for section, cls in _SECTIONS.items():
        current = getattr(settings, section)
        default = cls()
        lines += ["", f"[{section}]"]
        for f in dataclasses.fields(cls):
            value = getattr(current, f.name)
            shown = _toml_value(value)
            if (section, f.name) in _SECRET_KEYS and value:
                shown = '"***"'
            elif section == "storage" and f.name == "redis_url":
                shown = _toml_value(_mask_url(value))
            note = ""
            if value != getattr(default, f.name):
                note = f"  # {sources.get((section, f.name), 'set')}"
            lines.append(f"{f.name} = {shown}{note}")
    lines += ["", "[currencies]  # CNY fen per minor unit, times 1,000,000"]
    for code, ppm in sorted(settings.currencies.items()):
        origin = sources.get(("currencies", code), "set")
        note = "" if DEFAULT_CURRENCIES.get(code) == ppm else f"  # {origin}"
        lines.append(f"{code} = {ppm}{note}")
    return "\n".join(lines) + "\n"
