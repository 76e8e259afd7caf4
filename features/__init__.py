"""Streaming features: numpy state and Numba kernels. Pure computation: no I/O, clock or logs."""

from features.layout import ACCOUNT_FEATURES, CALL_FEATURES, TXN_FEATURES, WINDOWS
from features.state import FeatureState, RuleTable, empty_events

__all__ = [
    "ACCOUNT_FEATURES",
    "CALL_FEATURES",
    "TXN_FEATURES",
    "WINDOWS",
    "FeatureState",
    "RuleTable",
    "empty_events",
]
