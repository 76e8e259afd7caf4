"""Masking of identifiers and normalisation of phone numbers."""

from __future__ import annotations

from screening.convert import normalise_phone
from screening.masking import Masker, mask_processor


def test_mask_keeps_last_four_and_is_stable_per_key() -> None:
    """Same value, same key -> same mask; different keys -> different masks; no clear value."""
    a, b = Masker(b"k1"), Masker(b"k2")
    m = a("6222020200112233445")
    assert m.startswith("…3445#") and "6222020200112233445" not in m
    assert a("6222020200112233445") == m != b("6222020200112233445")
    assert a(m) == m  # already masked stays as is


def test_short_values_show_no_digits() -> None:
    """Values of six characters or fewer show only the hash."""
    assert Masker(b"k")("123456").startswith("…#")


def test_log_processor_masks_sensitive_keys_only() -> None:
    """The structlog processor masks identifier keys and leaves others alone."""
    proc = mask_processor(Masker(b"k"))
    out = proc(None, "info", {"payer": "6222000011112222", "action": "ALLOW", "phone": "13800000000"})
    assert out["action"] == "ALLOW"
    assert "6222000011112222" not in out["payer"] and "13800000000" not in out["phone"]


def test_phone_numbers_normalise_to_one_identity() -> None:
    """Mainland mobiles with or without +86, spaces or dashes are the same number."""
    forms = ["13800138000", "+86 138 0013 8000", "0086-138-0013-8000", "+8613800138000"]
    assert {normalise_phone(f) for f in forms} == {"+8613800138000"}
    assert normalise_phone("010-12345678") == "01012345678"
    assert normalise_phone("abc") is None
    assert normalise_phone("+") is None
    assert normalise_phone("") is None
