"""Redaction of names, phone numbers and e-mail addresses for exports, including inside free text.

Layers, strongest first:
1. what the conversation itself tells us: the booking's name and contact, the booking_name/booking_contact
   slot values and spaCy PERSON entities - each replaced wherever it appears, and each word of a name too;
2. patterns: e-mail addresses, runs of 7+ digits (phone numbers, with spaces, dots, dashes, brackets),
   and names introduced as "my name is ...", "call me ...", "I'm Jane ...".
It errs towards removing too much (a date like 12.03.2024 looks like a phone number and goes too).
Conversation ids are replaced by a keyed pseudonym: WhatsApp and SMS ids are phone numbers.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable, List, Optional

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w])\+?\(?\d[\d\s().\-/]{5,}\d(?![\w])")
NAME_INTRO_ANY_CASE = re.compile(
    r"\b(my name is|my name's|name is|name's|call me|this is|it's|its|i am|i'm|im)\s+"
    r"([A-Za-z][A-Za-z'\-]+(?:\s+[A-Za-z][A-Za-z'\-]+)?)",
    re.IGNORECASE,
)
# "this is", "it's", "I am" etc. are followed by names only sometimes ("I am sore"); there only
# capitalised words count. "my name is" and "call me" are followed by a name (or a number) always.
STRONG_INTROS = {"my name is", "my name's", "name is", "name's", "call me"}
NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*")
MIN_NAME_TOKEN = 3

NAME = "[name]"
PHONE_MARK = "[phone]"
EMAIL_MARK = "[email]"


def _phone(match: re.Match) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return PHONE_MARK if digits >= 7 else match.group(0)


NOT_NAMES = {"not", "so", "very", "really", "in", "having", "a", "an", "the", "on", "at", "back", "via", "by",
             "when", "if", "after", "before", "please", "now", "still", "also", "just", "here", "there", "sure"}


def _intro(match: re.Match) -> str:
    intro, words = match.group(1), match.group(2).split()
    if words[0].lower() in NOT_NAMES:
        return match.group(0)
    if words[0][0].isupper():
        name = [word for word in words if word[0].isupper()]
        name = words[: len(name)] if words[: len(name)] == name else words[:1]
    elif intro.lower() in STRONG_INTROS:
        name = words[:1]  # "my name is jane and ..." - only the first word is surely the name
    else:
        return match.group(0)  # "I am sore", "it's getting worse"
    rest = words[len(name):]
    return " ".join([intro, NAME] + rest)


class Redactor:
    """Redacts one conversation's text given what is known about that conversation."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        phrases, tokens = set(), set()
        for value in known:
            value = (value or "").strip()
            if not value:
                continue
            phrases.add(value)
            if "@" not in value and not any(ch.isdigit() for ch in value):
                tokens.update(t for t in NAME_TOKEN.findall(value) if len(t) >= MIN_NAME_TOKEN)
        self._known: List[re.Pattern] = [
            re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", re.IGNORECASE)
            for phrase in sorted(phrases, key=len, reverse=True)
        ]
        self._tokens: Optional[re.Pattern] = (
            re.compile(r"(?<!\w)(" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + r")(?!\w)", re.IGNORECASE)
            if tokens
            else None
        )

    def text(self, value: Optional[str]) -> str:
        if not value:
            return value or ""
        text = EMAIL.sub(EMAIL_MARK, value)
        for pattern in self._known:
            text = pattern.sub(lambda m: EMAIL_MARK if "@" in m.group(0) else (PHONE_MARK if any(c.isdigit() for c in m.group(0)) else NAME), text)
        text = PHONE.sub(_phone, text)
        text = NAME_INTRO_ANY_CASE.sub(_intro, text)
        if self._tokens is not None:
            text = self._tokens.sub(NAME, text)
        return text

    @staticmethod
    def contact(value: Optional[str]) -> str:
        if not value:
            return ""
        return EMAIL_MARK if "@" in value else PHONE_MARK


def pseudonym(secret: str, conversation_id: str) -> str:
    """Stable within one installation (same secret), not reversible without it."""
    digest = hmac.new(secret.encode("utf-8"), conversation_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return "conv-" + digest[:12]
