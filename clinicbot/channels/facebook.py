"""Facebook Messenger, configured from FACEBOOK_VERIFY, FACEBOOK_SECRET and FACEBOOK_PAGE_ACCESS_TOKEN.

Off (no routes) unless all three are set. Differences from Rasa's FacebookInput:
- The signature is checked with constant-time comparison, X-Hub-Signature-256 (sha256) only, never the SHA-1
  X-Hub-Signature; a request without a valid one gets 403 (Rasa answers 200 "not validated").
  The subscription check (GET) answers the challenge only for hub.verify_token = FACEBOOK_VERIFY, else 403.
- Every message in a batch is handled (Rasa stops after the first).
- Buttons follow Messenger's limits: up to 3 buttons with titles of at most 20 characters -> a button template;
  up to 13 -> quick replies; otherwise numbered options, and a "1"/"2" reply maps back to the payload.
  (Rasa silently drops the buttons when there are more than 3.)
- The Graph API call runs in a thread, so a slow Graph API does not stall other conversations.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Text

from fbmessenger import MessengerClient
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from clinicbot.channels.common import (
    Deliveries,
    forbidden,
    log_channel_state,
    message_custom,
    missing,
    numbered_options,
    rate_limited,
    resolve_numbered_reply,
    secret_matches,
    settings,
)

logger = logging.getLogger(__name__)

TEXT_ONLY_REPLY = "Sorry, I can only read text messages. Please type your question."
TITLE_MAX = 20  # Messenger's limit for a button or quick-reply title
BUTTON_TEMPLATE_MAX = 3
BUTTON_TEMPLATE_TEXT_MAX = 640
QUICK_REPLIES_MAX = 13


def signature_is_valid(app_secret: str, body: bytes, headers: Any) -> bool:
    """X-Hub-Signature-256 only: Meta sends it on every webhook, and the SHA-1 X-Hub-Signature it still sends
    alongside is weaker, so a request that carries only SHA-1 is refused."""
    method, _, signature = (headers.get("X-Hub-Signature-256") or "").partition("=")
    if method != "sha256" or not signature:
        return False
    expected = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class FacebookOutput(OutputChannel):
    @classmethod
    def name(cls) -> Text:
        return "facebook"

    def __init__(self, client: MessengerClient) -> None:
        self.client = client

    async def _send(self, recipient_id: Text, message: Dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.client.send, message, recipient_id, "RESPONSE")
        except Exception:
            logger.exception("Messenger could not send a message")

    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        for part in text.strip().split("\n\n"):
            await self._send(recipient_id, {"text": part})

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        titles_fit = all(len(b.get("title", "")) <= TITLE_MAX for b in buttons)
        if titles_fit and len(buttons) <= BUTTON_TEMPLATE_MAX and len(text) <= BUTTON_TEMPLATE_TEXT_MAX:
            template = [{"type": "postback", "title": b["title"], "payload": b["payload"]} for b in buttons]
            await self._send(
                recipient_id,
                {
                    "attachment": {
                        "type": "template",
                        "payload": {"template_type": "button", "text": text, "buttons": template},
                    }
                },
            )
        elif titles_fit and len(buttons) <= QUICK_REPLIES_MAX:
            quick = [{"content_type": "text", "title": b["title"], "payload": b["payload"]} for b in buttons]
            await self._send(recipient_id, {"text": text, "quick_replies": quick})
        else:
            await self._send(recipient_id, {"text": numbered_options(text, buttons)})

    async def send_quick_replies(
        self, recipient_id: Text, text: Text, quick_replies: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self.send_text_with_buttons(recipient_id, text, quick_replies)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        await self._send(recipient_id, {"attachment": {"type": "image", "payload": {"url": image}}})

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        rest = message_custom(json_message)
        if rest is not None:
            await self._send(recipient_id, rest)


def _text_of(event: Dict[str, Any]) -> Optional[str]:
    """The text (or button payload) of one messaging event; "" for a message without text; None to ignore."""
    if event.get("postback"):
        return event["postback"].get("payload") or ""
    message = event.get("message")
    if not message or message.get("is_echo"):
        return None
    quick_reply = message.get("quick_reply") or {}
    if quick_reply.get("payload"):
        return quick_reply["payload"]
    return message.get("text") or ""


class FacebookChannel(InputChannel):
    """credentials.yml: `clinicbot.channels.facebook.FacebookChannel:` (no keys; see .env.example)."""

    ENV = {"verify": "FACEBOOK_VERIFY", "secret": "FACEBOOK_SECRET", "page_access_token": "FACEBOOK_PAGE_ACCESS_TOKEN"}

    @classmethod
    def name(cls) -> Text:
        return "facebook"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        s = settings()
        return cls(s.facebook_verify, s.facebook_secret, s.facebook_page_access_token)

    def __init__(self, verify: Optional[str], secret: Optional[str], page_access_token: Optional[str]) -> None:
        self.verify = verify
        self.secret = secret
        self.page_access_token = page_access_token
        self.missing = missing(verify=verify, secret=secret, page_access_token=page_access_token)
        self.deliveries = Deliveries(settings().redis_url)

    @property
    def enabled(self) -> bool:
        return not self.missing

    def get_output_channel(self) -> Optional[OutputChannel]:
        return FacebookOutput(MessengerClient(self.page_access_token)) if self.enabled else None

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        webhook = Blueprint("fb_webhook", __name__)
        log_channel_state("Facebook Messenger", self.missing, self.ENV)
        if not self.enabled:
            return webhook

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["GET"])
        async def token_verification(request: Request) -> HTTPResponse:
            if secret_matches(self.verify, request.args.get("hub.verify_token")):
                return response.text(request.args.get("hub.challenge") or "")
            return forbidden("Facebook subscription check with a wrong verify token")

        @webhook.route("/webhook", methods=["POST"])
        async def webhook_post(request: Request) -> HTTPResponse:
            if not signature_is_valid(self.secret or "", request.body or b"", request.headers):
                return forbidden("Facebook request without a valid X-Hub-Signature-256")
            payload = request.json if request.body else None
            if not isinstance(payload, dict):
                return response.text("bad request", status=400)
            for event in _messaging_events(payload):
                await self._handle_event(request, event, on_new_message)
            return response.text("success")

        return webhook

    async def _handle_event(
        self, request: Request, event: Dict[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        sender_id = str((event.get("sender") or {}).get("id") or "")
        text = _text_of(event)
        if not sender_id or text is None:
            return
        if not await self.deliveries.first_time(self.name(), (event.get("message") or {}).get("mid")):
            return  # a redelivery: already answered
        out = self.get_output_channel()
        try:
            if not text.strip():
                await out.send_text_message(sender_id, TEXT_ONLY_REPLY)
                return
            text = await resolve_numbered_reply(request.app, sender_id, text)
            await on_new_message(
                UserMessage(text, out, sender_id, input_channel=self.name(), metadata=self.get_metadata(request))
            )
        except Exception:
            logger.exception("Facebook message could not be handled")


def _messaging_events(payload: Dict[str, Any]) -> Iterable[Dict[str, Any]]:
    for entry in payload.get("entry") or []:
        for event in entry.get("messaging") or []:
            yield event
