"""What every channel of the project shares.

- Project-only keys in a response's `custom` payload (`triage_level`) are for the widget; the messaging apps must
  never receive them as a message (Rasa's own output channels would post the raw JSON, or crash on socket.io).
- Numbered options for channels that cannot show a button, and the mapping of a "1"/"2" reply back to the payload.
  The options are read back from the conversation itself (the last bot messages in the tracker store), so they
  survive a restart and work with several Rasa instances; nothing is kept in memory.
- Secret comparison and the 403 every channel gives a request it cannot verify.
- Redelivered webhooks (a platform that did not get its 200 in time sends the same message again): each platform
  message id is handled once (`Deliveries`).
- A per-sender rate limit in front of the bot on every channel (`rate_limited`), so that one sender (a script, a
  stuck client) cannot take the server's time from every other patient.
"""
from __future__ import annotations

import hmac
import logging
import re
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence

from sanic import response
from sanic.response import HTTPResponse

from clinicbot.settings import Settings, load_settings

logger = logging.getLogger(__name__)

# Keys of `custom` in domain.yml that describe a message rather than being one.
PROJECT_CUSTOM_KEYS = frozenset({"triage_level"})

# A numbered reply only counts while the options are recent (Rasa's session_expiration_time is 60 minutes).
OPTIONS_MAX_AGE_SECONDS = 60 * 60

_NUMBER_REPLY = re.compile(r"^\s*#?\s*(\d{1,2})\s*[.)]?\s*$")


# How long a platform message id is remembered: Telegram, Twilio and Messenger retry within minutes to hours.
DELIVERY_MEMORY_SECONDS = 24 * 60 * 60
# The most message ids or senders one process keeps in memory (the oldest go first).
KEYS_IN_MEMORY = 50_000


class Deliveries:
    """Platform message ids already handled (Telegram update_id, Twilio MessageSid, Messenger mid).

    In Redis when REDIS_URL is set, so that several Rasa instances behind one webhook agree (SET NX: the first
    delivery wins even when the retry arrives while the first is still being answered); otherwise in this
    process's memory, which is all one instance needs.
    """

    def __init__(self, redis_url: Optional[str] = None) -> None:
        self._redis = None
        if redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(redis_url)
        self._seen: "OrderedDict[str, float]" = OrderedDict()

    async def first_time(self, channel: str, message_id: Any) -> bool:
        if message_id in (None, ""):
            return True  # nothing to recognise it by
        key = f"pelvic_health:delivery:{channel}:{message_id}"
        if self._redis is not None:
            try:
                return bool(await self._redis.set(key, 1, nx=True, ex=DELIVERY_MEMORY_SECONDS))
            except Exception:  # Redis down: answering twice is better than not answering
                logger.exception("Could not check a webhook delivery in Redis")
                return True
        now = time.monotonic()
        while self._seen and (len(self._seen) > KEYS_IN_MEMORY
                              or now - next(iter(self._seen.values())) > DELIVERY_MEMORY_SECONDS):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


# What a sender over the limit gets, once per minute. Nobody typing reaches the limit; the emergency line stays.
RATE_LIMIT_REPLY = ("You're sending messages faster than I can read them. Please wait a minute, then send your "
                    "message again. If this is an emergency, call 911 now.")
RATE_WINDOW_SECONDS = 60


class SenderRateLimit:
    """At most `per_minute` messages per sender and minute (a fixed window): counted in Redis when REDIS_URL is set,
    so the limit holds across instances, else in this process's memory."""

    def __init__(self, per_minute: int, redis_url: Optional[str] = None) -> None:
        self.per_minute = per_minute
        self._redis = None
        if redis_url:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(redis_url)
        self._counts: "OrderedDict[str, List[float]]" = OrderedDict()  # key -> [window start, count]

    async def count(self, key: str) -> int:
        """This message's number in the sender's current minute (1 = the first)."""
        window = int(time.time() // RATE_WINDOW_SECONDS)
        if self._redis is not None:
            name = f"pelvic_health:rate:{key}:{window}"
            try:
                pipe = self._redis.pipeline()
                pipe.incr(name)
                pipe.expire(name, RATE_WINDOW_SECONDS * 2)
                number, _ = await pipe.execute()
                return int(number)
            except Exception:  # Redis down: no limit rather than no answers
                logger.exception("Could not count a sender's messages in Redis")
                return 1
        start, number = self._counts.pop(key, (window, 0))
        if start != window:
            start, number = window, 0
        self._counts[key] = [start, number + 1]
        while len(self._counts) > KEYS_IN_MEMORY:
            self._counts.popitem(last=False)
        return int(number + 1)


def rate_limited(on_new_message: Callable[[Any], Awaitable[Any]], channel: str,
                 limit: Optional[SenderRateLimit] = None) -> Callable[[Any], Awaitable[Any]]:
    """`on_new_message` for a channel's blueprint, behind the per-sender limit (SENDER_MESSAGES_PER_MINUTE)."""
    if limit is None:
        configured = settings()
        limit = SenderRateLimit(configured.sender_messages_per_minute, configured.redis_url)

    async def handle(message: Any) -> Any:
        number = await limit.count(f"{channel}:{message.sender_id}")
        if number <= limit.per_minute:
            return await on_new_message(message)
        logger.warning("A %s sender went over %d messages a minute; message %d not read", channel,
                       limit.per_minute, number)
        if number == limit.per_minute + 1:  # once per minute, not an answer to every message of a flood
            await message.output_channel.send_text_message(message.sender_id, RATE_LIMIT_REPLY)
        return None

    return handle


def settings() -> Settings:
    """Read at channel creation (`rasa run` start), so a changed environment needs a restart."""
    return load_settings()


def missing(**values: Optional[str]) -> List[str]:
    """Names of the settings that are unset, for the 'channel is off' log line."""
    return [name for name, value in values.items() if not value]


def log_channel_state(channel: str, missing_names: Sequence[str], env_names: Dict[str, str]) -> None:
    if not missing_names:
        logger.info("%s channel is on.", channel)
    elif len(missing_names) == len(env_names):
        logger.info("%s channel is off (no %s set).", channel, " / ".join(env_names.values()))
    else:
        logger.warning(
            "%s channel is OFF: it is only partly configured; missing %s.",
            channel,
            ", ".join(env_names[name] for name in missing_names),
        )


def secret_matches(expected: Optional[str], given: Optional[str]) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def forbidden(reason: str) -> HTTPResponse:
    logger.warning("Rejected a webhook request: %s", reason)
    return response.text("forbidden", status=403)


def message_custom(custom: Any) -> Optional[Dict[str, Any]]:
    """The part of a `custom` payload a platform should receive, or None when it is only project metadata."""
    if not isinstance(custom, dict):
        return custom
    rest = {key: value for key, value in custom.items() if key not in PROJECT_CUSTOM_KEYS}
    return rest or None


class ProjectCustomMixin:
    """For output channels: never post `{"triage_level": ...}` to a messaging app."""

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        rest = message_custom(json_message)
        if rest is None:
            return
        await super().send_custom_json(recipient_id, rest, **kwargs)  # type: ignore[misc]


def numbered_options(text: str, buttons: Iterable[Dict[str, Any]]) -> str:
    """'Question?\\n\\n1. Book in person\\n2. ...\\nReply with a number.' in ONE message."""
    lines = [f"{index}. {button.get('title', '')}" for index, button in enumerate(buttons, start=1)]
    return f"{text.strip()}\n\n" + "\n".join(lines) + "\n\nReply with a number."


def choose_option(text: Optional[str], payloads: Sequence[str]) -> Optional[str]:
    """The payload a reply like '2' or '2.' stands for, or None when it is not one of the numbers offered."""
    if not text or not payloads:
        return None
    match = _NUMBER_REPLY.match(text)
    if not match:
        return None
    index = int(match.group(1))
    if 1 <= index <= len(payloads):
        return payloads[index - 1]
    return None


def last_button_payloads(events: Iterable[Any], now: Optional[float] = None) -> List[str]:
    """Payloads of the buttons on the bot's last message that had any, since the patient last wrote.

    `events` are a tracker's events, oldest first. Options older than OPTIONS_MAX_AGE_SECONDS do not count.
    """
    from rasa.shared.core.events import BotUttered, UserUttered

    now = time.time() if now is None else now
    for event in reversed(list(events)):
        if isinstance(event, UserUttered):
            return []
        if isinstance(event, BotUttered):
            buttons = (event.data or {}).get("buttons") or (event.data or {}).get("quick_replies")
            if buttons:
                if event.timestamp and now - event.timestamp > OPTIONS_MAX_AGE_SECONDS:
                    return []
                return [button.get("payload", "") for button in buttons]
    return []


async def resolve_numbered_reply(app: Any, sender_id: str, text: Optional[str]) -> Optional[str]:
    """Turn '1' into the payload of option 1 of the options last offered to this sender; else return text."""
    if not text or not _NUMBER_REPLY.match(text):
        return text
    agent = getattr(getattr(app, "ctx", None), "agent", None)
    tracker_store = getattr(agent, "tracker_store", None)
    if tracker_store is None:
        return text
    try:
        tracker = await tracker_store.retrieve(sender_id)
    except Exception:  # the tracker store is down: Rasa will fail on this message anyway
        logger.exception("Could not read the conversation to map a numbered reply")
        return text
    if tracker is None:
        return text
    payload = choose_option(text, last_button_payloads(tracker.events))
    return payload or text
