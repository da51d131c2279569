"""Turn database rows into what the console's pages show: filters from the query string, transcripts, the chart.

No SQL here (that is clinicbot/storage.py) and no HTML (that is templates/, autoescaped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlencode

from clinicbot.storage import CONVERSATION_FLAGS, ConversationFilter

PAGE_SIZE = 50
MAX_RANGE_DAYS = 366
FLAG_LABELS = {
    "red_flag": "Red flags",
    "booking": "Booking made",
    "fallback": "Not understood / low confidence",
    "negative_feedback": "Negative feedback",
    "handoff": "Asked for a person",
}
LEVELS = ("EMERGENCY", "URGENT", "BOOKING")
# Actions worth showing between messages in a transcript (the rest is Rasa's bookkeeping).
NOTABLE_ACTIONS = {
    "action_handoff": "Flagged for follow-up (handoff)",
    "action_submit_booking": "Booking form submitted",
    "action_cancel_booking": "Booking cancelled by the patient",
    "action_record_feedback": "Feedback recorded",
    "action_triage_followup": "Red flag recorded for staff",
    "action_default_fallback": "Fallback: the bot did not know what to do",
}


class BadRequest(ValueError):
    """A query-string value the console cannot use (shown to staff as a 400 page)."""


def local_midnight(day: date) -> datetime:
    """Start of a calendar day in the server's time zone (TZ), as an aware datetime."""
    return datetime.combine(day, time.min).astimezone()


def parse_day(value: Optional[str], name: str) -> Optional[date]:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as error:
        raise BadRequest(f"{name}: expected a date like 2026-11-30") from error


def date_range(args: Mapping[str, str], default_days: Optional[int] = None) -> Tuple[Optional[datetime], Optional[datetime], Dict[str, str]]:
    """`from` and `to` (inclusive calendar days, local time) -> [start, end) as aware datetimes."""
    first = parse_day(args.get("from"), "from")
    last = parse_day(args.get("to"), "to")
    if default_days is not None and first is None and last is None:
        last = datetime.now().astimezone().date()
        first = last - timedelta(days=default_days - 1)
    if first and last and last < first:
        raise BadRequest("the end date is before the start date")
    start = local_midnight(first) if first else None
    end = local_midnight(last + timedelta(days=1)) if last else None
    values = {"from": first.isoformat() if first else "", "to": last.isoformat() if last else ""}
    return start, end, values


def bounded_range(args: Mapping[str, str], default_days: int) -> Tuple[datetime, datetime, Dict[str, str]]:
    """A closed range (export, insight): both ends set, at most MAX_RANGE_DAYS long."""
    start, end, values = date_range(args, default_days)
    today = datetime.now().astimezone().date()
    if start is None:
        start = end - timedelta(days=default_days)
        values["from"] = start.date().isoformat()
    if end is None:
        end = local_midnight(today + timedelta(days=1))
        values["to"] = today.isoformat()
    if (end - start).days > MAX_RANGE_DAYS:
        raise BadRequest(f"choose at most {MAX_RANGE_DAYS} days")
    return start, end, values


def conversation_filter(args: Mapping[str, str]) -> Tuple[ConversationFilter, Dict[str, Any]]:
    start, end, values = date_range(args)
    flags = {flag: args.get(flag) in ("1", "on", "true") for flag in CONVERSATION_FLAGS}
    level = (args.get("level") or "").upper() or None
    if level is not None and level not in LEVELS:
        raise BadRequest("level: EMERGENCY, URGENT or BOOKING")
    try:
        page = max(1, int(args.get("page") or 1))
    except ValueError as error:
        raise BadRequest("page: a number") from error
    channel = (args.get("channel") or "").strip() or None
    text = (args.get("q") or "").strip()[:200] or None
    flt = ConversationFilter(
        start=start,
        end=end,
        channel=channel,
        red_flag=flags["red_flag"],
        red_flag_level=level,
        booking=flags["booking"],
        fallback=flags["fallback"],
        negative_feedback=flags["negative_feedback"],
        handoff=flags["handoff"],
        text=text,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    values.update(flags)
    values.update({"level": level or "", "channel": channel or "", "q": text or "", "page": page})
    return flt, values


def query_string(values: Mapping[str, Any], **changes: Any) -> str:
    merged = dict(values, **changes)
    pairs = []
    for key, value in merged.items():
        if value is True:
            pairs.append((key, "1"))
        elif value not in (None, "", False) and not (key == "page" and value == 1):
            pairs.append((key, str(value)))
    return urlencode(pairs)


# -- transcripts ------------------------------------------------------------------------------------
@dataclass
class Turn:
    kind: str  # user | bot | note | session
    time: Optional[datetime] = None
    text: str = ""
    button: bool = False  # the patient clicked a button: text is its payload
    intent: Optional[str] = None
    confidence: Optional[float] = None
    faq_topic: Optional[str] = None
    faq_confidence: Optional[float] = None
    triage_level: Optional[str] = None
    triage_rule: Optional[str] = None
    matched: List[str] = field(default_factory=list)
    suppressed: List[str] = field(default_factory=list)
    entities: List[str] = field(default_factory=list)
    buttons: List[str] = field(default_factory=list)
    response: Optional[str] = None
    channel: Optional[str] = None
    # kind "triage": the conversation's triage after a turn (clinicbot/triage_policy.py), finding by finding
    findings: List[str] = field(default_factory=list)


def _time(value: Optional[float]) -> Optional[datetime]:
    return datetime.fromtimestamp(value, timezone.utc) if value is not None else None


def transcript(events: Sequence[Dict[str, Any]]) -> List[Turn]:
    turns: List[Turn] = []
    for event in events:
        data = event.get("data") or {}
        kind = event.get("type_name")
        when = _time(event.get("timestamp"))
        if kind == "user":
            parse = data.get("parse_data") or {}
            intent = parse.get("intent") or {}
            triage = parse.get("triage") or {}
            selected = ((parse.get("response_selector") or {}).get("faq") or {}).get("response") or {}
            text = data.get("text") or ""
            turns.append(
                Turn(
                    kind="user",
                    time=when,
                    text=text,
                    button=text.startswith("/"),
                    intent=intent.get("name"),
                    confidence=intent.get("confidence"),
                    faq_topic=(selected.get("intent_response_key") or "").split("/")[-1] or None
                    if intent.get("name") == "faq"
                    else None,
                    faq_confidence=selected.get("confidence") if intent.get("name") == "faq" else None,
                    triage_level=triage.get("level") if triage.get("level") not in (None, "NONE") else None,
                    triage_rule=triage.get("rule"),
                    matched=list(triage.get("matched") or []),
                    suppressed=list(triage.get("suppressed") or []),
                    entities=[f"{e.get('entity')}: {e.get('value')}" for e in parse.get("entities") or []],
                    channel=data.get("input_channel"),
                )
            )
        elif kind == "bot":
            metadata = data.get("metadata") or {}
            buttons = (data.get("data") or {}).get("buttons") or []
            turns.append(
                Turn(
                    kind="bot",
                    time=when,
                    text=data.get("text") or "",
                    buttons=[str(button.get("title", "")) for button in buttons if isinstance(button, dict)],
                    response=metadata.get("utter_action"),
                )
            )
        elif kind == "slot" and event.get("action_name") == "triage_conversation" and isinstance(data.get("value"), dict):
            summary = data["value"]
            used = set(summary.get("used") or [])
            turns.append(Turn(
                kind="triage", time=when, triage_level=summary.get("level"),
                triage_rule=", ".join(summary.get("rules") or []) or None,
                text=f"Conversation triage after message {summary.get('turn')}",
                findings=[
                    f"{'✔ ' if f.get('name') in used and f.get('status') == 'affirmed' else ''}message {f.get('turn')}: "
                    f"{f.get('name', '').replace('_', ' ')} — {f.get('status')} ({f.get('detector')}): “{f.get('words')}”"
                    for f in summary.get("findings") or []
                ],
            ))
        elif kind == "action" and event.get("action_name") in NOTABLE_ACTIONS:
            turns.append(Turn(kind="note", time=when, text=NOTABLE_ACTIONS[event["action_name"]]))
        elif kind == "session_started":
            turns.append(Turn(kind="session", time=when, text="New session"))
    return turns


# -- chart --------------------------------------------------------------------------------------------
@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str
    series: str


@dataclass
class Chart:
    width: int
    height: int
    bars: List[Bar]
    ticks: List[Tuple[float, str]]  # x, day label
    max_value: int
    days: List[Tuple[str, int, int]]  # table fallback: day, conversations, bookings
    top: int = 10
    bottom: int = 20


def per_day(times: Sequence[datetime], first: date, last: date) -> List[Tuple[date, int]]:
    counts: Dict[date, int] = {}
    for moment in times:
        day = moment.astimezone().date()
        counts[day] = counts.get(day, 0) + 1
    days = []
    day = first
    while day <= last:
        days.append((day, counts.get(day, 0)))
        day += timedelta(days=1)
    return days


def daily_chart(conversations: Sequence[datetime], bookings: Sequence[datetime], first: date, last: date) -> Chart:
    """Grouped bars per day: conversations started and bookings made, scaled to the busiest day."""
    conv = per_day(conversations, first, last)
    book = per_day(bookings, first, last)
    width, height, top, bottom, left = 720, 180, 10, 20, 30
    plot_height = height - top - bottom
    slot = (width - left) / max(1, len(conv))
    max_value = max([count for _, count in conv] + [count for _, count in book] + [1])
    bars: List[Bar] = []
    ticks: List[Tuple[float, str]] = []
    label_every = max(1, len(conv) // 10)
    for index, ((day, conversations_count), (_, bookings_count)) in enumerate(zip(conv, book)):
        x = left + index * slot
        bar_width = max(1.0, slot * 0.4)
        for offset, value, series in ((0.1, conversations_count, "conversations"), (0.5, bookings_count, "bookings")):
            bar_height = plot_height * value / max_value
            bars.append(
                Bar(
                    x=round(x + slot * offset, 1),
                    y=round(top + plot_height - bar_height, 1),
                    width=round(bar_width, 1),
                    height=round(bar_height, 1),
                    value=value,
                    label=day.isoformat(),
                    series=series,
                )
            )
        if index % label_every == 0:
            ticks.append((round(x + slot / 2, 1), day.strftime("%d %b")))
    return Chart(
        width=width,
        height=height,
        bars=bars,
        ticks=ticks,
        max_value=max_value,
        days=[(day.isoformat(), c, b) for (day, c), (_, b) in zip(conv, book)],
        top=top,
        bottom=bottom,
    )
