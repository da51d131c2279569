"""The REST channel (/webhooks/rest/webhook) with two guards in front of Rasa's own handler.

1. The REST channel is for trusted integrations. When RASA_AUTH_TOKEN is set, a POST must carry
   `Authorization: Bearer <token>`, never `?token=` (URLs end up in logs; Rasa does not protect this webhook). Unset, it answers only
   callers on this machine that did not come through a proxy: local development and the test stack.
2. Its sender ids live in their own namespace ("rest:<sender>"), so a caller cannot write into, or read the
   replies of, a WhatsApp, Telegram or widget conversation by naming that patient's id.
3. An empty or whitespace-only message gets a kind reply instead of Rasa's empty list.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request

from clinicbot.channels.common import forbidden, rate_limited, secret_matches, settings

SENDER_PREFIX = "rest:"
# Headers a reverse proxy adds: such a request came from elsewhere even though its peer is loopback.
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

EMPTY_MESSAGE_REPLY = "It looks like your message was empty. Please type your question and I'll do my best to help."


class RestChannel(RestInput):
    """credentials.yml: `clinicbot.channels.rest.RestChannel:` (no keys; the token comes from the environment)."""

    @classmethod
    def name(cls) -> Text:
        return "rest"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        return cls(auth_token=settings().rasa_auth_token)

    def __init__(self, auth_token: Optional[str] = None) -> None:
        self.auth_token = auth_token

    def _token_of(self, request: Request) -> Optional[str]:
        # The header only: a token in the URL ends up in proxy and access logs.
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return None

    async def _extract_sender(self, req: Request) -> Optional[Text]:
        sender = await super()._extract_sender(req)
        return namespaced(sender)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        webhook = super().blueprint(on_new_message)

        async def guard(request: Request) -> Optional[response.HTTPResponse]:
            if request.method != "POST" or not request.path.endswith("/webhook"):
                return None
            if self.auth_token:
                if not secret_matches(self.auth_token, self._token_of(request)):
                    return forbidden("REST webhook without a valid token")
            elif not is_local_caller(request):
                return forbidden("REST webhook from another machine, and no RASA_AUTH_TOKEN is set")
            body = request.json if request.body else None
            if not isinstance(body, dict):
                return response.json({"error": "expected a JSON object with 'sender' and 'message'"}, status=400)
            text = body.get("message")
            if text is None or (isinstance(text, str) and not text.strip()):
                return response.json([{"recipient_id": namespaced(body.get("sender")), "text": EMPTY_MESSAGE_REPLY}])
            return None

        webhook.middleware(guard, "request")
        return webhook


def namespaced(sender: Any) -> Optional[str]:
    """A REST sender id, in the REST channel's own namespace."""
    if sender is None:
        return None
    return f"{SENDER_PREFIX}{sender}"


def is_local_caller(request: Request) -> bool:
    """A caller on this machine that did not come through a proxy."""
    if any(header in request.headers for header in _PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.ip).is_loopback
    except ValueError:
        return False
