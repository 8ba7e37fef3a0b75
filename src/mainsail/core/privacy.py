"""Finding and hiding personal data: emails, phone numbers, card-like numbers.

Standard library only (every runtime env imports it). :func:`detect_kind` classifies a sample of
a column's values; :func:`redact` replaces every match in a text by a hash (or a bare tag), which
log formatters and error paths apply before anything is written. The patterns aim at the obvious
cases, not at completeness: a declared `privacy.sensitive_columns` entry is the real guarantee.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Literal

Kind = Literal["email", "phone", "card"]
Redact = Literal["hash", "drop"]

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
#: 13 to 19 digits, optionally in groups split by spaces or dashes (checked by Luhn).
CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
#: An optional +country code, then 9 to 14 digits with the usual separators; at least one
#: separator or a leading + so that plain integers (ids, amounts) are not taken for phones.
PHONE = re.compile(
    r"(?<![\w.:])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}"
    r"(?![\w.:])|(?<![\w.:])\+\d{9,14}(?![\w.:])"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


#: Nine digits with at most three separators between neighbours: the least a phone or card
#: number holds. One C-level scan decides whether the slower patterns need to run at all.
_NINE_DIGITS = re.compile(r"\d(?:[^\w]{0,3}\d){8}")


def kind_of(value: str) -> Kind | None:
    """The kind of personal data `value` is as a whole, or None."""
    text = value.strip()
    if EMAIL.fullmatch(text):
        return "email"
    if CARD.fullmatch(text) and _is_card(text):
        return "card"
    if PHONE.fullmatch(text) and 9 <= _digits(text) <= 15:
        return "phone"
    return None


def detect_kind(values: Iterable[object], share: float) -> tuple[Kind, float] | None:
    """The kind that at least `share` of the (non-missing, text) `values` are, with its share."""
    counts: dict[Kind, int] = {}
    n = 0
    for value in values:
        if not isinstance(value, str):
            continue
        n += 1
        kind = kind_of(value)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    if not n or not counts:
        return None
    kind, hits = max(counts.items(), key=lambda kv: kv[1])
    return (kind, hits / n) if hits / n >= share else None


def tag(kind: str, value: str, mode: Redact) -> str:
    """What replaces one sensitive `value`: `<kind:12 hex of its sha256>` or `<kind>`."""
    if mode == "drop":
        return f"<{kind}>"
    return f"<{kind}:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"


def _card_or_keep(match: re.Match[str], mode: Redact) -> str:
    text = match.group(0)
    return tag("card", text, mode) if _is_card(text) else text


def _phone_or_keep(match: re.Match[str], mode: Redact) -> str:
    text = match.group(0)
    return tag("phone", text, mode) if 9 <= _digits(text) <= 15 else text


def redact(text: str, mode: Redact = "hash") -> str:
    """`text` with every email, card-like number and phone number replaced (see :func:`tag`).
    Cheap when there is nothing to find: three regex scans, no allocation."""
    if "@" in text:
        text = EMAIL.sub(lambda m: tag("email", m.group(0), mode), text)
    # card and phone numbers have nine digits at least: a shorter text (a model's name, a
    # version, a variant) needs no scan
    if len(text) >= 9 and _NINE_DIGITS.search(text) is not None:
        text = CARD.sub(lambda m: _card_or_keep(m, mode), text)
        text = PHONE.sub(lambda m: _phone_or_keep(m, mode), text)
    return text
