"""Plain functions that read and clean what patients type (booking form answers, questions).

Kept out of the action classes so they can be tested on their own and reused by the console.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Optional

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
TAG = re.compile(r"<[^>]*>")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NAME_PREFIX = re.compile(r"^(my name is|my name's|i am|i'm|im|it's|its|this is|call me|name is|name:)\s+", re.I)

VISIT_WORDS = {
    "in_person": ("in person", "in-person", "clinic", "office", "come in", "face to face", "face-to-face", "visit you"),
    "virtual": ("virtual", "video", "online", "zoom", "phone", "telehealth", "remote", "call", "from home"),
}
VISIT_LABELS = {"in_person": "in person", "virtual": "virtual (video or phone)"}


@dataclass(frozen=True)
class Contact:
    value: str
    kind: str  # phone | email


def clean_text(text: Optional[str], limit: int = 200) -> str:
    """Plain text only: no markup, no control characters, no runs of spaces, at most `limit` characters."""
    text = html.unescape(text or "")
    text = TAG.sub(" ", text)
    text = CONTROL.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:limit]


def parse_contact(text: Optional[str]) -> Optional[Contact]:
    text = clean_text(text, 300)
    email = EMAIL.search(text)
    if email:
        return Contact(email.group(0).lower(), "email")
    phone = PHONE.search(text)
    if phone:
        digits = re.sub(r"\D", "", phone.group(0))
        if 7 <= len(digits) <= 15:
            return Contact(re.sub(r"\s+", " ", phone.group(0)).strip(), "phone")
    return None


def parse_name(text: Optional[str]) -> Optional[str]:
    name = NAME_PREFIX.sub("", clean_text(text, 120)).strip(" .,!")
    if not name or len(name) > 80:
        return None
    if any(ch.isdigit() for ch in name) or "@" in name:
        return None
    if not any(ch.isalpha() for ch in name):
        return None
    return name


def parse_visit_type(text: Optional[str]) -> Optional[str]:
    lowered = clean_text(text).lower()
    if lowered in VISIT_LABELS:
        return lowered
    for visit_type, words in VISIT_WORDS.items():
        if any(word in lowered for word in words):
            return visit_type
    return None


def parse_times(text: Optional[str]) -> Optional[str]:
    times = clean_text(text, 200)
    return times if any(ch.isalnum() for ch in times) else None


QUESTION_STARTS = ("why", "what", "how", "when", "where", "which", "who", "is", "are", "can", "could", "should",
                   "would", "will", "do", "does", "did", "any", "tips")
QUESTION_PHRASES = ("is it", "is that", "is this", "can i", "should i", "do i", "what can", "what should", "how do",
                    "how can", "any advice", "any tips", "i wonder", "wondering", "want to know", "wanted to ask",
                    "like to ask", "like to know")


def asks_a_question(text: Optional[str]) -> bool:
    """Whether a message asks something, besides whatever it reports."""
    lowered = clean_text(text, 6000).lower()
    if "?" in lowered:
        return True
    words = re.findall(r"[a-z']+", lowered)
    if words and words[0] in QUESTION_STARTS:
        return True
    return any(phrase in lowered for phrase in QUESTION_PHRASES)
