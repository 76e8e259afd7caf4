"""A small client for the Screening API: channel (plaintext, TLS or mutual TLS), bearer token,
message builders.

Used by the demo, the tests and the benchmarks; banks can read it as an example.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from features.layout import join_reasons
from screening.tls import ClientTls
from screening.v1 import screening_pb2 as pb
from screening.v1 import screening_pb2_grpc as pb_grpc

__all__ = ["ScreeningClient", "call_event", "decisions_of_columns", "timestamp", "transaction",
           "watch_entry"]


def timestamp(when: dt.datetime | int) -> Any:
    """A protobuf Timestamp from an aware datetime or epoch milliseconds."""
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    if isinstance(when, int):
        ts.FromMilliseconds(when)
    else:
        if when.tzinfo is None:
            raise ValueError("use timezone-aware datetimes")
        ts.FromDatetime(when.astimezone(dt.UTC))
    return ts


def transaction(
    transaction_id: str, when: dt.datetime | int, payer: str, payee: str, amount_minor: int, *,
    currency: str = "CNY", channel: int = pb.CHANNEL_MOBILE_APP, payer_type: int = pb.PARTY_TYPE_PERSON,
    payee_type: int = pb.PARTY_TYPE_PERSON, payer_opened: str = "", payee_opened: str = "",
    institution: str = "BANK01", cash: bool = False, cross_border: bool = False,
    device_id: str = "", payer_phone: str = "", memo: str = "", payee_phone: str = "",
    payee_institution: str | None = None,
) -> pb.Transaction:
    return pb.Transaction(
        transaction_id=transaction_id,
        event_time=timestamp(when),
        payer=pb.Party(account_id=payer, institution=institution, party_type=payer_type,  # type: ignore[arg-type]
                       account_opened_date=payer_opened),
        payee=pb.Party(account_id=payee, party_type=payee_type,  # type: ignore[arg-type]
                       institution=institution if payee_institution is None else payee_institution,
                       account_opened_date=payee_opened),
        amount=pb.Money(minor_units=amount_minor, currency=currency),
        channel=channel,  # type: ignore[arg-type]
        cash=cash,
        cross_border=cross_border,
        device_id=device_id,
        payer_phone=payer_phone,
        memo=memo,
        payee_phone=payee_phone,
    )


def call_event(call_id: str, when: dt.datetime | int, caller: str, callee: str, *,
               duration_seconds: int = 0, caller_class: int = pb.NUMBER_CLASS_MOBILE,
               outcome: int = pb.CALL_OUTCOME_UNSPECIFIED) -> pb.CallEvent:
    return pb.CallEvent(call_id=call_id, caller_number=caller, callee_number=callee,
                        start_time=timestamp(when), duration_seconds=duration_seconds,
                        caller_class=caller_class, outcome=outcome)  # type: ignore[arg-type]


def watch_entry(kind: int, value: str, reason: str, source: str,
                expires: dt.datetime | None = None) -> pb.WatchlistEntry:
    entry = pb.WatchlistEntry(entity=pb.EntityRef(kind=kind, value=value), reason=reason,  # type: ignore[arg-type]
                              source=source)
    if expires is not None:
        entry.expires_at.CopyFrom(timestamp(expires))
    return entry


def decisions_of_columns(cols: pb.DecisionColumns) -> list[dict[str, Any]]:
    """A columnar ScreenBatch reply read back, one dict per transaction: action, risk_score,
    reasons (the codes, in bit order, as ``Decision.reasons``), reports (the flag bits),
    policy_version, degraded and duplicate."""
    legends = [[r.code for r in legend.reasons] for legend in cols.legends]
    versions = [legend.policy_version for legend in cols.legends]
    index = list(cols.legend_index) or [0] * len(cols.actions)
    # rules 63 and up: reason_bits_high, empty when no decision has one
    high = list(cols.reason_bits_high) or [0] * len(cols.actions)
    out = []
    for action, score, low, hi, flags, degraded, dup, which in zip(
            cols.actions, cols.risk_scores, cols.reason_bits, high, cols.report_flags,
            cols.degraded, cols.duplicate, index, strict=True):
        codes = legends[which]
        bits = join_reasons(low, hi)
        out.append({"action": action, "risk_score": score,
                    "reasons": [c for i, c in enumerate(codes) if bits >> i & 1],
                    "reports": flags, "policy_version": versions[which],
                    "degraded": degraded, "duplicate": dup})
    return out


class ScreeningClient:
    """Stubs bound to one channel and one bearer token; the channel is TLS with ``tls`` (mutual
    when it holds a client certificate: the server then knows the caller by it, and ``token``
    is not needed), plaintext without."""

    def __init__(self, address: str, token: str | None = None, timeout: float = 10.0,
                 max_receive_bytes: int = 64 << 20, tls: ClientTls | None = None) -> None:
        # a case export is bigger than gRPC's default 4 MB (the server sends up to its
        # [server] max_message_bytes)
        options = [("grpc.max_receive_message_length", max_receive_bytes)]
        if tls is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            self.channel = grpc.secure_channel(address, tls.credentials(), options=options)
        self.stub = pb_grpc.ScreeningStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ScreeningClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def is_serving(self, service: str = "") -> bool:
        resp = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self.timeout)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    def screen(self, txn: pb.Transaction) -> pb.Decision:
        return self.stub.ScreenTransaction(txn, metadata=self.metadata, timeout=self.timeout)

    def screen_batch(self, txns: Iterable[pb.Transaction], *, columnar: bool = False
                     ) -> pb.DecisionBatch:
        """``columnar``: the reply in ``columns`` (see ``decisions_of_columns``)."""
        return self.stub.ScreenBatch(pb.TransactionBatch(transactions=list(txns),
                                                         columnar=columnar),
                                     metadata=self.metadata, timeout=self.timeout)

    def screen_stream(self, txns: Iterable[pb.Transaction]) -> Iterator[pb.Decision]:
        return self.stub.ScreenStream(iter(txns), metadata=self.metadata)

    def report_call(self, call: pb.CallEvent) -> pb.CallDecision:
        return self.stub.ReportCall(call, metadata=self.metadata, timeout=self.timeout)

    def update_watchlist(self, upsert: Iterable[pb.WatchlistEntry] = (),
                         remove: Iterable[pb.EntityRef] = ()) -> pb.UpdateWatchlistResponse:
        return self.stub.UpdateWatchlist(
            pb.UpdateWatchlistRequest(upsert=list(upsert), remove=list(remove)),
            metadata=self.metadata, timeout=self.timeout)

    def query_account(self, account_id: str, limit: int = 0) -> pb.AccountReport:
        return self.stub.QueryAccount(
            pb.QueryAccountRequest(account_id=account_id, recent_decisions_limit=limit),
            metadata=self.metadata, timeout=self.timeout)

    def submit_feedback(self, verdict: int, *, account_id: str = "", transaction_id: str = "",
                        note: str = "", expires: dt.datetime | None = None) -> pb.FeedbackResponse:
        req = pb.FeedbackRequest(verdict=verdict, note=note)  # type: ignore[arg-type]
        if account_id:
            req.account_id = account_id
        if transaction_id:
            req.transaction_id = transaction_id
        if expires is not None:
            req.expires_at.CopyFrom(timestamp(expires))
        return self.stub.SubmitFeedback(req, metadata=self.metadata, timeout=self.timeout)

    def upsert_accounts(self, profiles: Iterable[pb.AccountProfile]) -> pb.UpsertAccountsResponse:
        return self.stub.UpsertAccounts(pb.UpsertAccountsRequest(accounts=list(profiles)),
                                        metadata=self.metadata, timeout=self.timeout)

    def large_value_report(self, report_date: str, institutions: Iterable[str] = (),
                           timeout: float | None = None) -> pb.LargeValueReport:
        """One local day's large-value report (``report_date`` YYYY-MM-DD) from the ledger."""
        return self.stub.GetLargeValueReport(
            pb.LargeValueReportRequest(report_date=report_date, institutions=list(institutions)),
            metadata=self.metadata, timeout=timeout or max(self.timeout, 60.0))

    def reload_policy(self, policy_toml: str = "") -> pb.ReloadPolicyResponse:
        """Swap the server's policy for ``policy_toml`` (empty: re-read its configured file)."""
        return self.stub.ReloadPolicy(pb.ReloadPolicyRequest(policy_toml=policy_toml),
                                      metadata=self.metadata, timeout=self.timeout)

    def export_case_graph(self, request: pb.ExportCaseGraphRequest,
                          timeout: float | None = None) -> pb.CaseGraph:
        return self.stub.ExportCaseGraph(request, metadata=self.metadata,
                                         timeout=timeout or max(self.timeout, 60.0))
