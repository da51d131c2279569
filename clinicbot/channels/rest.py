"""The REST channel (/webhooks/rest/webhook) with two guards in front of Rasa's own handler.

1. When RASA_AUTH_TOKEN is set, a POST must carry `Authorization: Bearer <token>` or `?token=<token>`
   (the same token `rasa run --auth-token` wants for the HTTP API; Rasa does not protect this webhook).
   Unset, the webhook is open: local development and the test stack.
2. An empty or whitespace-only message gets a kind reply instead of Rasa's empty list.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request

from clinicbot.channels.common import forbidden, secret_matches, settings

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
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.args.get("token")

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[None]]) -> Blueprint:
        webhook = super().blueprint(on_new_message)

        async def guard(request: Request) -> Optional[response.HTTPResponse]:
            if request.method != "POST" or not request.path.endswith("/webhook"):
                return None
            if self.auth_token and not secret_matches(self.auth_token, self._token_of(request)):
                return forbidden("REST webhook without a valid token")
            body = request.json if request.body else None
            if not isinstance(body, dict):
                return response.json({"error": "expected a JSON object with 'sender' and 'message'"}, status=400)
            text = body.get("message")
            if text is None or (isinstance(text, str) and not text.strip()):
                return response.json([{"recipient_id": body.get("sender"), "text": EMPTY_MESSAGE_REPLY}])
            return None

        webhook.middleware(guard, "request")
        return webhook
