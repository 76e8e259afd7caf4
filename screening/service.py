"""The gRPC servicer: decode, call the engine, encode, map errors. Nothing else."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from screening.audit import CALL, DECISION, DECISIONS, AuditTrail, iso_ms, watch_entry
from screening.auth import CLEAR_ID_ROLES, Authenticator, Caller, registry_owners, report_scope
from screening.case import export_case
from screening.convert import Converter, case_graph_message, large_value_message, masked_or_clear
from screening.engine import Engine
from screening.errors import (
    CapacityExceeded,
    ConfigError,
    FailedPrecondition,
    InvalidRequest,
    OutOfRange,
    ScreeningError,
    Unauthenticated,
    status_of,
)
from screening.idempotency import DEFAULT_SCOPE
from screening.ledger import day_text
from screening.masking import Masker
from screening.metrics import Metrics
from screening.model import DecisionRecord, TxnColumns, TxnInput
from screening.offline.reports import ReportThresholds, large_value_rows, thresholds_from_policy
from screening.policy import ACTION_NAMES, CALL_ACTION_NAMES, Policy, load_policy, parse_policy
from screening.v1 import screening_pb2 as pb
from screening.v1 import screening_pb2_grpc as pb_grpc
from screening.wire import WireBatch

__all__ = ["ScreeningService"]

R = TypeVar("R")
_ALLOW = 1


def _rpc(method: Callable[..., R]) -> Callable[..., R]:
    """Translate ScreeningError to its status; anything else to INTERNAL with a log reference."""

    @functools.wraps(method)
    def wrapper(self: ScreeningService, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except ScreeningError as exc:
            self._abort(context, exc, method.__name__)
        except Exception:
            self._internal(context, method.__name__)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    return wrapper


class ScreeningService(pb_grpc.ScreeningServicer):
    def __init__(self, engine: Engine, converter: Converter, auth: Authenticator,
                 masker: Masker, log: Any, log_every_decision: bool = False,
                 metrics: Metrics | None = None, audit: AuditTrail | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        # the regulator's record (screening.audit): each handler asks it for room before it
        # changes anything and queues what it did once done
        self.audit = audit
        self.conv = converter
        self.auth = auth
        self.mask = masker
        self.log = log
        # Quiet decisions (ALLOW, nothing to report) are logged only at debug level; when that is
        # off, not even their log fields are built (masking is an HMAC per identifier).
        self.log_every_decision = log_every_decision
        # case exports: files at most this big (room left for the summary in the reply)
        self._export_limit = min(engine.settings.graph.export_max_bytes,
                                 engine.settings.server.max_message_bytes - (256 << 10))
        # the large-value lines: the same policy numbers that set the live flag
        self.report_thresholds: ReportThresholds | None = None
        self._no_thresholds = ""
        self._set_thresholds(engine.policy)
        # the server's reader of the shadow policy files (``RunningServer.read_shadows``): checks
        # them and returns what makes them the running set; None: no shadows to re-read
        self.read_shadows: Callable[[str], Callable[[], None]] | None = None
        # open ScreenStreams by caller scope (``[server] max_streams_per_caller``)
        self._streams: dict[str, int] = {}
        self._streams_lock = threading.Lock()

    def _set_thresholds(self, policy: Policy) -> None:
        try:
            self.report_thresholds, self._no_thresholds = thresholds_from_policy(policy), ""
        except ConfigError as exc:
            self.report_thresholds, self._no_thresholds = None, str(exc)

    def use_policy(self, new: Policy, by: str, caller: Caller | None = None) -> Policy:
        """Make ``new`` the active policy (engine, reports, metrics); returns the previous one.
        Raises ConfigError, changing nothing, when the engine cannot take it."""
        if self.audit is not None and caller is not None:  # a SIGHUP is not refused
            self.audit.admit()
        old = self.engine.swap_policy(new)
        if self.audit is not None:
            self.audit.event("policy", caller or Caller(by, "operator"),
                             "ReloadPolicy" if caller else by, new.version, previous=old.version,
                             rules=len(new.txn_rules), call_rules=len(new.call_rules))
        self.conv.policy = new
        self._set_thresholds(new)
        if self.metrics is not None:
            self.metrics.set_policy(new.version)
        self.log.info("policy_swapped", by=by, previous=old.version, version=new.version,
                      rules=len(new.txn_rules), call_rules=len(new.call_rules))
        return old

    # ------------------------------------------------------------------ helpers
    def _abort(self, context: grpc.ServicerContext, exc: ScreeningError, rpc: str) -> None:
        code, message = status_of(exc)
        self.log.info("rejected", rpc=rpc, code=code.name, detail=message)
        if self.metrics is not None:
            self.metrics.failed(rpc, code.name)
        context.abort(code, message)

    def _internal(self, context: grpc.ServicerContext, rpc: str) -> None:
        ref = uuid.uuid4().hex[:12]
        self.log.exception("internal_error", rpc=rpc, ref=ref)
        if self.metrics is not None:
            self.metrics.failed(rpc, grpc.StatusCode.INTERNAL.name)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {ref})")

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        try:
            return self.auth.caller_of(context)
        except Unauthenticated:  # revoked since the interceptor let the call in
            return Caller("?", "?")

    def _scope(self, caller: Caller) -> str:
        """The calling institution, whose transaction and call ids these are: the caller's name
        (in the tokens file, or its certificate's CN) and, for a caller bound to an institution,
        that institution too (two banks' callers may both be named "core"); one scope for every
        caller when auth is off."""
        if not self.auth.enabled:
            return DEFAULT_SCOPE
        return f"{caller.name}\x1f{caller.institution}" if caller.institution else caller.name

    def _admit(self) -> None:
        """Room in the audit trail for this call's records (refused before any change)."""
        if self.audit is not None:
            self.audit.admit()

    def _log_decision(self, t: TxnInput, rec: DecisionRecord, duplicate: bool,
                      reasons: list[str]) -> None:
        quiet = rec.action == _ALLOW and rec.report_flags == 0 and not rec.degraded
        if quiet and not self.log_every_decision:
            return
        emit = self.log.debug if quiet else self.log.info
        emit(
            "screened",
            txn=t.transaction_id,
            payer=self.mask(t.payer.account_id),
            payee=self.mask(t.payee.account_id),
            action=ACTION_NAMES[rec.action],
            reasons=reasons,
            risk=rec.score,
            reports=rec.report_flags,
            duplicate=duplicate,
            degraded=rec.degraded,
            latency_us=rec.latency_us,
        )

    def _decide(self, txns: list[TxnInput], t0: int, caller: Caller, rpc: str,
                batch: bool = False) -> list[pb.Decision]:
        self._admit()
        results = self.engine.screen(txns, self._scope(caller), batch=batch)
        at = time.time_ns()
        audit = self.audit
        out = []
        for t, (rec, dup) in zip(txns, results, strict=True):
            msg = self.conv.decision(rec, dup)
            # the reasons as the decision names them (by its own policy): decoded once, here
            reasons = [r.code for r in msg.reasons]
            if audit is not None:
                audit.add((DECISION, at, caller, rpc, t, rec, dup, reasons))
            self._log_decision(t, rec, dup, reasons)
            if self.metrics is not None:
                self.metrics.decided(rpc, ACTION_NAMES[rec.action], reasons,
                                     degraded=rec.degraded, duplicate=dup)
            out.append(msg)
        latency = (time.perf_counter_ns() - t0) // 1000
        for msg in out:
            msg.server_latency_us = latency
        return out

    def screen_columns(self, txns: TxnColumns, caller: Caller, rpc: str
                       ) -> tuple[list[DecisionRecord], list[bool], list[list[str]]]:
        """Screen validated columns for ``caller``: room in the audit trail first, then the
        engine (its lock, the caller's idempotency scope, the journal, the ledger), one audit
        item for the batch, the log lines and metrics. ScreenBatch and the Arrow Flight
        endpoint both come here. Returns (records, duplicate flags, reason codes)."""
        self._admit()
        results = self.engine.screen(txns, self._scope(caller), batch=True)
        recs = [rec for rec, _ in results]
        dups = [dup for _, dup in results]
        codes = self.conv.reason_codes
        reasons = [codes(rec) for rec in recs]
        if self.audit is not None:
            self.audit.add_decisions((DECISIONS, time.time_ns(), caller, rpc, txns,
                                      recs, dups, reasons))
        for i, rec in enumerate(recs):
            if not (rec.action == _ALLOW and rec.report_flags == 0 and not rec.degraded) \
                    or self.log_every_decision:
                self._log_decision(txns.row(i), rec, dups[i], reasons[i])
        if self.metrics is not None:
            self.metrics.decided_batch(rpc, (ACTION_NAMES[rec.action] for rec in recs), reasons,
                                       degraded=sum(rec.degraded for rec in recs),
                                       duplicates=sum(dups))
        return recs, dups, reasons

    # ------------------------------------------------------------------ RPCs
    @_rpc
    def ScreenTransaction(self, request: pb.Transaction, context: grpc.ServicerContext
                          ) -> pb.Decision:
        t0 = time.perf_counter_ns()
        return self._decide([self.conv.transaction(request)], t0, self._caller(context),
                            "ScreenTransaction")[0]

    @_rpc
    def ScreenBatch(self, request: pb.TransactionBatch | WireBatch,
                    context: grpc.ServicerContext) -> pb.DecisionBatch:
        """Columns from the request to the reply: one audit item per batch, one journal entry
        and one ledger append per chunk the engine screens it in (``Engine.screen``); a Decision
        message per transaction only for the classic reply. The request comes read from its
        bytes (``screening.wire``) unless that doubted it; then, or when the bulk checks doubt
        the columns read, as a message, which names any problem."""
        t0 = time.perf_counter_ns()
        txns = None
        if isinstance(request, WireBatch):
            txns = self.conv.wire_columns(request)
            if txns is None:
                try:
                    request = pb.TransactionBatch.FromString(request.raw)
                except DecodeError:  # the wire reader refuses what protobuf does: not expected
                    raise InvalidRequest("request", "cannot be decoded as "
                                         "screening.v1.TransactionBatch") from None
        if txns is None:
            assert isinstance(request, pb.TransactionBatch)
            txns = self.conv.batch_columns(request)
        recs, dups, _ = self.screen_columns(txns, self._caller(context), "ScreenBatch")
        latency = (time.perf_counter_ns() - t0) // 1000
        if request.columnar:
            return pb.DecisionBatch(columns=self.conv.decision_columns(recs, dups, latency))
        return self.conv.decision_batch(recs, dups, latency)

    def _open_stream(self, scope: str) -> None:
        """Count an open ScreenStream of ``scope``; CapacityExceeded past its share."""
        limit = self.engine.settings.server.streams_per_caller
        with self._streams_lock:
            n = self._streams.get(scope, 0)
            if n >= limit:
                raise CapacityExceeded(f"too many open streams of this caller: {limit} ([server] "
                                       "max_streams_per_caller); close one or use ScreenBatch")
            self._streams[scope] = n + 1

    def _close_stream(self, scope: str) -> None:
        with self._streams_lock:
            n = self._streams.pop(scope, 1) - 1
            if n > 0:
                self._streams[scope] = n

    def ScreenStream(self, request_iterator: Iterator[pb.Transaction],
                     context: grpc.ServicerContext) -> Iterator[pb.Decision]:
        n = 0
        caller = self._caller(context)
        scope = self._scope(caller)
        try:
            self._open_stream(scope)
        except CapacityExceeded as exc:
            self._abort(context, exc, "ScreenStream")
        try:
            for request in request_iterator:
                t0 = time.perf_counter_ns()
                try:
                    txn = self.conv.transaction(request)
                except ScreeningError as exc:
                    tid = request.transaction_id[:64] or "?"
                    exc.args = (f"message {n} (transaction_id {tid}): {exc}",)
                    raise
                decision = self._decide([txn], t0, caller, "ScreenStream")[0]
                if self.metrics is not None:
                    self.metrics.observe("ScreenStream", (time.perf_counter_ns() - t0) / 1e9)
                yield decision
                n += 1
        except ScreeningError as exc:
            self._abort(context, exc, "ScreenStream")
        except grpc.RpcError:  # the client cancelled or went away, or the server is stopping
            self.log.debug("stream_ended", rpc="ScreenStream", answered=n)
        except Exception:
            self._internal(context, "ScreenStream")
        finally:
            self._close_stream(scope)

    @_rpc
    def ReportCall(self, request: pb.CallEvent, context: grpc.ServicerContext) -> pb.CallDecision:
        t0 = time.perf_counter_ns()
        call = self.conv.call(request)
        caller = self._caller(context)
        self._admit()
        rec, dup = self.engine.report_call(call, self._scope(caller))
        msg = self.conv.call_decision(rec, dup)
        msg.server_latency_us = (time.perf_counter_ns() - t0) // 1000
        reasons = [r.code for r in msg.reasons]
        if self.audit is not None:
            self.audit.add((CALL, time.time_ns(), caller, "ReportCall", call, rec, dup, reasons))
        if self.metrics is not None:
            self.metrics.decided("ReportCall", CALL_ACTION_NAMES[rec.action], reasons,
                                 duplicate=dup)
        quiet = rec.action == _ALLOW
        if quiet and not self.log_every_decision:
            return msg
        emit = self.log.debug if quiet else self.log.info
        emit("call_screened", call=call.call_id, caller=self.mask(call.caller),
             callee=self.mask(call.callee), action=CALL_ACTION_NAMES[rec.action],
             reasons=reasons, risk=rec.score, duplicate=dup)
        return msg

    @_rpc
    def UpdateWatchlist(self, request: pb.UpdateWatchlistRequest, context: grpc.ServicerContext
                        ) -> pb.UpdateWatchlistResponse:
        upserts, removes = self.conv.watchlist(request)
        caller = self._caller(context)
        self._admit()
        change = self.engine.update_watchlist(upserts, removes)
        if self.audit is not None:
            self.audit.event(
                "watchlist", caller, "UpdateWatchlist", self.engine.policy.version,
                upserts=[watch_entry(e.kind, e.value, e.reason, e.source, e.expires_ms)
                         for e in upserts],
                removes=[watch_entry(kind, value) for kind, value in removes],
                added=change.added, replaced=change.replaced, removed=change.removed,
                not_found=change.not_found)
        self.log.info("watchlist_updated", by=caller.name, role=caller.role,
                      added=change.added, replaced=change.replaced, removed=change.removed,
                      not_found=change.not_found,
                      entities=[self.mask(e.value) for e in upserts] + [self.mask(v) for _, v in removes])
        return pb.UpdateWatchlistResponse(added=change.added, replaced=change.replaced,
                                          removed=change.removed, not_found=change.not_found)

    @_rpc
    def QueryAccount(self, request: pb.QueryAccountRequest, context: grpc.ServicerContext
                     ) -> pb.AccountReport:
        account_id, limit = self.conv.query(request)
        caller = self._caller(context)
        self._admit()
        view = self.engine.query_account(account_id, limit, self.engine.clock_ms())
        if self.audit is not None:
            self.audit.event("query", caller, "QueryAccount", self.engine.policy.version,
                             account=account_id, known=view.known, limit=limit,
                             masked=caller.role not in CLEAR_ID_ROLES)
        self.log.info("account_queried", by=caller.name, role=caller.role,
                      account=self.mask(account_id), known=view.known)
        return self.conv.account(view, masked_or_clear(self.mask, caller.role in CLEAR_ID_ROLES))

    @_rpc
    def SubmitFeedback(self, request: pb.FeedbackRequest, context: grpc.ServicerContext
                       ) -> pb.FeedbackResponse:
        caller = self._caller(context)
        fb = dataclasses.replace(self.conv.feedback(request, source=caller.name),
                                 scope=self._scope(caller))
        self._admit()
        changed, released = self.engine.feedback(fb, self.engine.clock_ms())
        if self.audit is not None:
            self.audit.event("feedback", caller, "SubmitFeedback", self.engine.policy.version,
                             account=fb.account_id or None, txn=fb.transaction_id or None,
                             verdict=pb.FeedbackVerdict.Name(fb.verdict), note=fb.note,
                             accounts_changed=changed, payee_released=released)
        self.log.info("feedback", by=caller.name, role=caller.role,
                      account=self.mask(fb.account_id) if fb.account_id else None,
                      txn=fb.transaction_id or None, verdict=pb.FeedbackVerdict.Name(fb.verdict),
                      accounts_changed=changed, payee_released=released)
        return pb.FeedbackResponse(accounts_changed=changed, payee_released=released)

    @_rpc
    def UpsertAccounts(self, request: pb.UpsertAccountsRequest, context: grpc.ServicerContext
                       ) -> pb.UpsertAccountsResponse:
        profiles = self.conv.accounts(request)
        caller = self._caller(context)
        owners, writer = registry_owners(caller, [p.institution for p in profiles])
        profiles = [dataclasses.replace(p, institution=o) for p, o in zip(profiles, owners, strict=True)]
        self._admit()
        n = self.engine.upsert_accounts(profiles, writer=writer)
        if self.audit is not None:
            self.audit.event("accounts", caller, "UpsertAccounts", self.engine.policy.version,
                             accounts=[p.account_id for p in profiles], upserted=n,
                             institutions=sorted(set(owners)))
        self.log.info("accounts_upserted", by=caller.name, role=caller.role, accounts=n)
        return pb.UpsertAccountsResponse(upserted=n)

    @_rpc
    def ExportCaseGraph(self, request: pb.ExportCaseGraphRequest, context: grpc.ServicerContext
                        ) -> pb.CaseGraph:
        req = self.conv.case_request(request)
        caller = self._caller(context)
        clear = caller.role in CLEAR_ID_ROLES
        self._admit()
        data = self.engine.case_input(req.centre, req.value, hops=req.hops, lo_ms=req.from_ms,
                                      hi_ms=req.to_ms, max_nodes=req.max_nodes,
                                      now_ms=self.engine.clock_ms())
        bundle = export_case(data, masked_or_clear(self.mask, clear), req.formats,
                             max_bytes=self._export_limit)
        g = bundle.graph
        if self.audit is not None:
            self.audit.event("export", caller, "ExportCaseGraph", self.engine.policy.version,
                             centre_kind=req.centre, centre=req.value, hops=req.hops,
                             from_time=iso_ms(req.from_ms), to_time=iso_ms(req.to_ms),
                             nodes=g.number_of_nodes(), edges=g.number_of_edges(),
                             formats=list(req.formats), masked=not clear)
        self.log.info("case_exported", by=caller.name, role=caller.role, centre=self.mask(req.value),
                      centre_kind=req.centre, hops=req.hops, nodes=g.number_of_nodes(),
                      edges=g.number_of_edges(), left_out=g.graph.get("nodes_left_out", 0),
                      masked=not clear, formats=list(req.formats))
        return case_graph_message(bundle.files, g, bundle.findings, req, masked=not clear)

    @_rpc
    def GetLargeValueReport(self, request: pb.LargeValueReportRequest,
                            context: grpc.ServicerContext) -> pb.LargeValueReport:
        day, asked = self.conv.large_value_request(request)
        caller = self._caller(context)
        institutions, clear = report_scope(caller, asked)
        th = self.report_thresholds
        if th is None:
            raise FailedPrecondition(f"the policy has no large-value lines: {self._no_thresholds}")
        self._admit()
        view, account_name = self.engine.ledger_view(day)
        if not view.covered:
            raise OutOfRange("report_date", view.uncovered())
        try:
            frame = large_value_rows(view.frame(account_name), th, self.engine.settings,
                                     institutions=institutions)
        except ConfigError as exc:
            raise FailedPrecondition(str(exc)) from None
        if self.audit is not None:
            self.audit.event("report", caller, "GetLargeValueReport", self.engine.policy.version,
                             report="large_value", date=day_text(day), institutions=institutions,
                             rows=frame.height, transactions=view.n, masked=not clear)
        self.log.info("large_value_report", by=caller.name, role=caller.role, date=day_text(day),
                      rows=frame.height, transactions=view.n, institutions=institutions,
                      masked=not clear)
        return large_value_message(frame, day=day, horizon=view.horizon,
                                   tz_offset_hours=view.tz_offset_hours,
                                   show=masked_or_clear(self.mask, clear), masked=not clear,
                                   source=th.source)

    @_rpc
    def ReloadPolicy(self, request: pb.ReloadPolicyRequest, context: grpc.ServicerContext
                     ) -> pb.ReloadPolicyResponse:
        caller = self._caller(context)
        if request.policy_toml:
            try:
                new = parse_policy(request.policy_toml, "policy_toml")
                old = self.use_policy(new, by=caller.name, caller=caller)
            except ConfigError as exc:  # "policy_toml:LINE: problem" -> "policy_toml: line LINE: ..."
                problem = str(exc).removeprefix("policy_toml:").lstrip()
                raise InvalidRequest("policy_toml", f"line {problem}" if problem[:1].isdigit()
                                     else problem) from None
        else:
            # the configured file, and the shadow files with it (as SIGHUP): each read and
            # checked before anything is swapped
            path = self.engine.settings.policy.file
            try:
                new = load_policy(path or None)
            except ConfigError as exc:
                raise FailedPrecondition(f"policy file {path or '(default)'} not loaded, the "
                                         f"running policy stays: {exc}") from None
            try:
                use_shadows = self.read_shadows(caller.name) if self.read_shadows else None
            except ConfigError as exc:
                raise FailedPrecondition(f"shadow policy files not loaded, the running policy "
                                         f"and shadows stay: {exc}") from None
            try:
                old = self.use_policy(new, by=caller.name, caller=caller)
            except ConfigError as exc:
                raise FailedPrecondition(f"policy file {path or '(default)'} not loaded, the "
                                         f"running policy stays: {exc}") from None
            if use_shadows is not None:
                use_shadows()
        return pb.ReloadPolicyResponse(previous_version=old.version, policy_version=new.version,
                                       transaction_rules=len(new.txn_rules),
                                       call_rules=len(new.call_rules))
