"""Rasa's socket.io channel for the website widget, with the output fixed for responses that carry `custom`.

Rasa 3.6's SocketIOOutput.send_custom_json calls `sio.emit(bot_message_evt, **custom)`: with the domain's
`custom: {triage_level: EMERGENCY}` that is `emit(..., triage_level=...)`, a TypeError, so the conversation stops
after the emergency text and the tracker is not saved. Here the project keys travel WITH the text instead:
every part of such a message is emitted as `{"text": ..., "custom": {"triage_level": "EMERGENCY"}}`, which
the widget uses to make the message stand out. Other custom payloads are emitted as `{"custom": {...}}`.

The socket.io channel stays open: it is the public website. Session persistence comes from credentials.yml.
The server makes every conversation id and hands the browser a signed token for it ("<id>.<signature>"); a
browser resumes a conversation only with a token the server signed, so it can never name another channel's
sender id nor guess a widget one. Each socket is bound to the conversation its token confirmed: what it sends goes
there, whatever session_id the message claims.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import inspect
import json
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.socketio import SocketIOInput, SocketIOOutput
from sanic import Blueprint

from clinicbot.channels.common import PROJECT_CUSTOM_KEYS, message_custom, rate_limited, settings

logger = logging.getLogger(__name__)

_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


def is_widget_session_id(value: Any) -> bool:
    """The widget's conversation ids are uuid4 hex strings made by the server."""
    return isinstance(value, str) and bool(_SESSION_ID.match(value))


class SessionTokens:
    """'<conversation id>.<HMAC>' tokens: only the server can make one, so only it can name a conversation."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _signature(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def issue(self, session_id: str) -> str:
        return f"{session_id}.{self._signature(session_id)}"

    def verify(self, token: Any) -> Optional[str]:
        """The conversation id of a genuine token, else None."""
        if not isinstance(token, str) or token.count(".") != 1:
            return None
        session_id, signature = token.split(".")
        if not is_widget_session_id(session_id):
            return None
        return session_id if hmac.compare_digest(signature, self._signature(session_id)) else None


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


class WidgetOutput(SocketIOOutput):
    async def send_response(self, recipient_id: Text, message: Dict[Text, Any]) -> None:
        message = copy.deepcopy(message)
        custom = message.get("custom")
        project = (
            {key: value for key, value in custom.items() if key in PROJECT_CUSTOM_KEYS}
            if isinstance(custom, dict)
            else {}
        )
        if not project or not message.get("text"):
            await super().send_response(recipient_id, message)
            return
        rest = message_custom(custom)
        text = message.pop("text")
        buttons = message.get("buttons") or message.get("quick_replies") or []
        parts: List[Dict[str, Any]] = [
            {"text": part, "custom": project} for part in (text.strip().split("\n\n") or [text])
        ]
        if buttons:
            parts[-1]["quick_replies"] = [
                {"content_type": "text", "title": b["title"], "payload": b["payload"]} for b in buttons
            ]
        for part in parts:
            await self._send_message(recipient_id, part)
        if rest:
            await self.send_custom_json(recipient_id, rest)

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        rest = message_custom(json_message)
        if rest is None:
            # project metadata without text: nothing for the patient to see
            return
        await self._send_message(recipient_id, {"custom": rest})


class WidgetSocketIOInput(SocketIOInput):
    """credentials.yml key `clinicbot.channels.socketio.WidgetSocketIOInput` with Rasa's socketio options."""

    @classmethod
    def name(cls) -> Text:
        return "socketio"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        credentials = dict(credentials or {})
        credentials.setdefault("session_persistence", True)
        return super().from_credentials(credentials)

    def get_output_channel(self) -> Optional[OutputChannel]:
        if self.sio is None:
            return super().get_output_channel()
        return WidgetOutput(self.sio, self.bot_message_evt)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        blueprint = super().blueprint(on_new_message)
        sio = self.sio
        assert sio is not None
        tokens = SessionTokens(settings().derived_key("widget-session"))
        bound: Dict[Text, Text] = {}  # socket id -> the conversation its token confirmed (this process's sockets)

        # Replaces Rasa's session handler: a conversation is resumed only with a token the server signed, so a
        # browser cannot name another channel's conversation ("whatsapp:+1555...") or guess a widget one.
        async def session_request(sid: Text, data: Optional[Dict]) -> None:
            requested = (data or {}).get("session_id") if isinstance(data, dict) else None
            session_id = tokens.verify(requested) or uuid.uuid4().hex
            bound[sid] = session_id
            if self.session_persistence:
                await _maybe_await(sio.enter_room(sid, session_id, namespace=self.namespace))
            await sio.emit("session_confirm", tokens.issue(session_id), room=sid, namespace=self.namespace)

        async def disconnect(sid: Text) -> None:
            bound.pop(sid, None)

        # Replaces Rasa's user-message handler (same logic) so that replies go through WidgetOutput.
        async def handle_message(sid: Text, data: Dict) -> None:
            data = data if isinstance(data, dict) else {}
            if self.session_persistence:
                if sid not in bound:
                    logger.warning("socket.io message before session_request ignored")
                    return
                sender_id = bound[sid]  # the socket's own conversation, whatever the message claims
            else:
                sender_id = sid
            metadata = data.get(self.metadata_key) or {}
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            await on_new_message(
                UserMessage(
                    data.get("message", ""),
                    WidgetOutput(sio, self.bot_message_evt),
                    sender_id,
                    input_channel=self.name(),
                    metadata=metadata,
                )
            )

        sio.on("session_request", session_request, namespace=self.namespace)
        sio.on("disconnect", disconnect, namespace=self.namespace)
        sio.on(self.user_message_evt, handle_message, namespace=self.namespace)
        return blueprint
