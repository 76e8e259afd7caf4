"""One exception tree for the service, mapped to gRPC status codes in one place.

    ScreeningError
     ├── InvalidRequest        INVALID_ARGUMENT   (names the offending field)
     │    └── OutOfRange       OUT_OF_RANGE       (a valid value the state no longer covers)
     ├── FailedPrecondition    FAILED_PRECONDITION (the server is not set up for the request)
     ├── NotFound              NOT_FOUND
     ├── Conflict              ALREADY_EXISTS     (an id already used for something else; names
     │                                             the field)
     ├── CapacityExceeded      RESOURCE_EXHAUSTED (names the setting that bounds it)
     │    └── Throttled                            (too many failed token attempts from an address)
     ├── DeadlineUnmeetable    DEADLINE_EXCEEDED  (refused before any work: too little time left)
     ├── Unauthenticated       UNAUTHENTICATED
     ├── PermissionDenied      PERMISSION_DENIED
     ├── StoreUnavailable      UNAVAILABLE        (the state store cannot be reached or written)
     │    └── StoreBusy                            (another server holds the store's writer lease)
     ├── AuditUnavailable      UNAVAILABLE        (the audit trail cannot take more records now:
     │                                             refused before any change)
     ├── CheckpointError       (start-up and CLI: a checkpoint of another format, or corrupted;
     │                          names the file or key; never sent to clients)
     ├── ConfigError           (start-up only: bad config or policy file; never sent to clients)
     └── InputFileError        (batch jobs: an event file that cannot be used; names the column)
"""

from __future__ import annotations

import grpc

__all__ = [
    "AuditUnavailable",
    "CapacityExceeded",
    "CheckpointError",
    "ConfigError",
    "Conflict",
    "DeadlineUnmeetable",
    "FailedPrecondition",
    "InputFileError",
    "InvalidRequest",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ScreeningError",
    "StoreBusy",
    "StoreUnavailable",
    "Throttled",
    "Unauthenticated",
    "status_of",
]


class ScreeningError(Exception):
    """Base of every error the service raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(ScreeningError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class OutOfRange(InvalidRequest):
    """A well-formed value outside what the state holds (a day before the ledger's horizon)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPrecondition(ScreeningError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(ScreeningError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(ScreeningError):
    """An id the caller already used for different content (a transaction id for another
    payment): refused, never answered with the other one's result; nothing changes."""

    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class CapacityExceeded(ScreeningError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Throttled(CapacityExceeded):
    """Calls from an address that failed to authenticate too often are refused for a while,
    valid tokens included: otherwise a guesser would still learn which token is right."""


class DeadlineUnmeetable(ScreeningError):
    """The call's deadline leaves less time than the call is expected to take: refused before
    it changes any state, instead of answered after the caller gave up."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ScreeningError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ScreeningError):
    code = grpc.StatusCode.PERMISSION_DENIED


class StoreUnavailable(ScreeningError):
    code = grpc.StatusCode.UNAVAILABLE


class StoreBusy(StoreUnavailable):
    """Another server writes to this store (or took it over): two writers would overwrite each
    other's checkpoints, so the second one does not start and a server that lost the store stops
    writing to it. The message names the store and the holder."""


class AuditUnavailable(ScreeningError):
    """The audit trail's writer is ``[audit] max_pending`` records behind (a slow or failing
    disk): the call is refused before it changes anything, never decided unrecorded."""

    code = grpc.StatusCode.UNAVAILABLE


class CheckpointError(ScreeningError):
    """A checkpoint cannot be used (other format version, corrupted, inconsistent); the message
    names the file or Redis key."""


class ConfigError(ScreeningError):
    """A config or policy file is invalid; the message names the file and line."""


class InputFileError(ScreeningError):
    """An input file for a batch job is unusable; the message names the file and column."""


def status_of(exc: ScreeningError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message for ``exc``."""
    return exc.code, str(exc)
