"""Structured logging (structlog): JSON lines for machines, identifiers always masked."""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol, TextIO, cast

import structlog

from screening.config import LogSettings
from screening.masking import Masker, mask_processor

__all__ = ["LogStream", "configure_logging", "get_logger"]


class LogStream(Protocol):
    """Where log lines go: a text file, or anything that writes and flushes like one."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(settings: LogSettings, stream: LogStream | None = None) -> Masker:
    """Set up structlog once for the process; returns the Masker used for identifiers."""
    masker = Masker(settings.mask_key.encode("utf-8") if settings.mask_key else None)
    level = _LEVELS.get(settings.level.lower(), logging.INFO)
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False)
                     if settings.format == "json" else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_processor(masker),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, stream or sys.stderr)),
        cache_logger_on_first_use=True,
    )
    return masker


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
