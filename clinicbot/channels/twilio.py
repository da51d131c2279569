"""WhatsApp (and SMS) through Twilio, configured from TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_NUMBER
("whatsapp:+1..." for WhatsApp) and TWILIO_WEBHOOK_URL (the public URL entered in the Twilio console).

Off (no routes) unless all four are set. Differences from Rasa's TwilioInput:
- X-Twilio-Signature is verified with twilio's RequestValidator against TWILIO_WEBHOOK_URL; forged -> 403.
  (The URL comes from settings, not from the request, because behind a proxy the request's own URL differs.)
- Buttons become numbered options in the same message, and a reply "1"/"2"/"3" is sent on as that button's
  payload (clinicbot.channels.common: the options are read back from the conversation, not kept in memory).
- A message with only a picture or voice note gets a kind "text only" reply.
- The Twilio REST call runs in a thread, so a slow Twilio does not stall every other conversation.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.twilio import TwilioOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from clinicbot.channels.common import (
    Deliveries,
    ProjectCustomMixin,
    forbidden,
    log_channel_state,
    missing,
    numbered_options,
    rate_limited,
    resolve_numbered_reply,
    settings,
)

logger = logging.getLogger(__name__)

TEXT_ONLY_REPLY = "Sorry, I can only read text messages. Please type your question."
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class NumberedTwilioOutput(ProjectCustomMixin, TwilioOutput):
    async def _send_message(self, message_data: Dict[Text, Any]) -> Any:
        try:
            return await asyncio.to_thread(self.messages.create, **message_data)
        except TwilioRestException as error:
            logger.error("Twilio could not send a message: %s", error.msg)
            return None

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        await self._send_message(
            {"to": recipient_id, "from_": self.twilio_number, "body": numbered_options(text, buttons)}
        )


class TwilioChannel(InputChannel):
    """credentials.yml: `clinicbot.channels.twilio.TwilioChannel:` (no keys; see .env.example)."""

    ENV = {
        "account_sid": "TWILIO_ACCOUNT_SID",
        "auth_token": "TWILIO_AUTH_TOKEN",
        "twilio_number": "TWILIO_NUMBER",
        "webhook_url": "TWILIO_WEBHOOK_URL",
    }

    @classmethod
    def name(cls) -> Text:
        return "twilio"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        s = settings()
        return cls(s.twilio_account_sid, s.twilio_auth_token, s.twilio_number, s.twilio_webhook_url)

    def __init__(
        self,
        account_sid: Optional[str],
        auth_token: Optional[str],
        twilio_number: Optional[str],
        webhook_url: Optional[str],
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.twilio_number = twilio_number
        self.webhook_url = webhook_url
        self.missing = missing(
            account_sid=account_sid, auth_token=auth_token, twilio_number=twilio_number, webhook_url=webhook_url
        )
        self.deliveries = Deliveries(settings().redis_url)

    @property
    def enabled(self) -> bool:
        return not self.missing

    def get_output_channel(self) -> Optional[OutputChannel]:
        if not self.enabled:
            return None
        return NumberedTwilioOutput(self.account_sid, self.auth_token, self.twilio_number)

    def is_signed_by_twilio(self, request: Request) -> bool:
        signature = request.headers.get("X-Twilio-Signature")
        if not signature or not self.auth_token or not self.webhook_url:
            return False
        return RequestValidator(self.auth_token).validate(self.webhook_url, request.form, signature)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        webhook = Blueprint("twilio_webhook", __name__)
        log_channel_state("Twilio", self.missing, self.ENV)
        if not self.enabled:
            return webhook

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def message(request: Request) -> HTTPResponse:
            if not self.is_signed_by_twilio(request):
                return forbidden("Twilio request without a valid X-Twilio-Signature")
            sender = request.form.get("From")
            text = request.form.get("Body")
            if not sender:
                return response.text("bad request", status=400)
            if not await self.deliveries.first_time(self.name(), request.form.get("MessageSid")):
                return response.text(EMPTY_TWIML, content_type="text/xml")  # a redelivery: already answered
            out = self.get_output_channel()
            try:
                if not text or not text.strip():
                    await out.send_text_message(sender, TEXT_ONLY_REPLY)
                else:
                    text = await resolve_numbered_reply(request.app, sender, text.replace("¡", "@"))
                    await on_new_message(
                        UserMessage(
                            text, out, sender, input_channel=self.name(), metadata=self.get_metadata(request)
                        )
                    )
            except Exception:
                logger.exception("Twilio message could not be handled")
            return response.text(EMPTY_TWIML, content_type="text/xml")

        return webhook
