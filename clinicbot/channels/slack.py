"""Slack, configured from SLACK_TOKEN (bot token), SLACK_SIGNING_SECRET and, optionally, SLACK_CHANNEL.

Off (no routes) unless SLACK_TOKEN and SLACK_SIGNING_SECRET are set. Built on Rasa's SlackInput, which verifies
X-Slack-Signature (HMAC of the body with the signing secret, timestamp within 5 minutes). Differences:
- A request that fails that check gets 403 (Rasa: 400), before anything else reads it.
- Messages are posted without `as_user` (a legacy parameter new Slack apps cannot use).
- Up to 25 buttons go in one actions block (Slack's limit; Rasa drops every button beyond 5);
  more, or a text too long for a section, become numbered options.
- Project metadata in `custom` (triage_level) is never posted as a message.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.slack import SlackBot, SlackInput
from sanic import Blueprint, response
from sanic.request import Request

from clinicbot.channels.common import (
    forbidden,
    log_channel_state,
    message_custom,
    missing,
    numbered_options,
    rate_limited,
    resolve_numbered_reply,
    settings,
)

logger = logging.getLogger(__name__)

ACTIONS_MAX = 25
SECTION_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75


class SlackOutput(SlackBot):
    async def send_text_message(self, recipient_id: Text, text: Text, **kwargs: Any) -> None:
        recipient = self.slack_channel or recipient_id
        for part in text.strip().split("\n\n"):
            await self._post_message(channel=recipient, text=part, type="mrkdwn")

    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        recipient = self.slack_channel or recipient_id
        fits = (
            len(buttons) <= ACTIONS_MAX
            and len(text) <= SECTION_TEXT_MAX
            and all(len(b.get("title", "")) <= BUTTON_TEXT_MAX for b in buttons)
        )
        if not fits:
            await self._post_message(channel=recipient, text=numbered_options(text, buttons))
            return
        blocks = [
            {"type": "section", "text": {"type": "plain_text", "text": text}},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": b["title"]}, "value": b["payload"]}
                    for b in buttons
                ],
            },
        ]
        await self._post_message(channel=recipient, text=text, blocks=blocks)

    async def send_image_url(self, recipient_id: Text, image: Text, **kwargs: Any) -> None:
        recipient = self.slack_channel or recipient_id
        await self._post_message(
            channel=recipient, text=image, blocks=[{"type": "image", "image_url": image, "alt_text": image}]
        )

    async def send_attachment(self, recipient_id: Text, attachment: Dict[Text, Any], **kwargs: Any) -> None:  # type: ignore[override]
        await self._post_message(channel=self.slack_channel or recipient_id, attachments=[attachment])

    async def send_custom_json(self, recipient_id: Text, json_message: Dict[Text, Any], **kwargs: Any) -> None:
        rest = message_custom(json_message)
        if rest is None:
            return
        channel = rest.pop("channel", None) or self.slack_channel or recipient_id
        await self._post_message(channel=channel, **rest)


class SlackChannel(SlackInput):
    """credentials.yml: `clinicbot.channels.slack.SlackChannel:` (no keys; see .env.example)."""

    ENV = {"slack_token": "SLACK_TOKEN", "slack_signing_secret": "SLACK_SIGNING_SECRET"}

    @classmethod
    def name(cls) -> Text:
        return "slack"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        s = settings()
        return cls(
            slack_token=s.slack_token,
            slack_channel=s.slack_channel,
            slack_signing_secret=s.slack_signing_secret or "",
        )

    def __init__(self, slack_token: Optional[str], slack_channel: Optional[str] = None, slack_signing_secret: str = "") -> None:
        self.missing = missing(slack_token=slack_token, slack_signing_secret=slack_signing_secret)
        if self.missing:
            # Rasa's constructor refuses to build a channel without a signing secret; an off channel needs none.
            self.slack_token = slack_token
            self.slack_channel = slack_channel
            self.slack_signing_secret = slack_signing_secret
            self._background_tasks = set()
            return
        super().__init__(
            slack_token,
            slack_channel,
            slack_retry_reason_header="x-slack-retry-reason",
            slack_retry_number_header="x-slack-retry-num",
            slack_signing_secret=slack_signing_secret,
        )

    @property
    def enabled(self) -> bool:
        return not self.missing

    def get_output_channel(self, channel: Optional[Text] = None, thread_id: Optional[Text] = None) -> OutputChannel:
        return SlackOutput(self.slack_token, channel or self.slack_channel, thread_id, getattr(self, "proxy", None))

    async def process_message(
        self,
        request: Request,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        text: Text,
        sender_id: Optional[Text],
        metadata: Optional[Dict],
    ) -> Any:
        if sender_id:
            text = await resolve_numbered_reply(request.app, sender_id, text)
        return await super().process_message(request, on_new_message, text, sender_id, metadata)

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        log_channel_state("Slack", self.missing, self.ENV)
        if not self.enabled:
            return Blueprint("slack_webhook", __name__)
        webhook = super().blueprint(on_new_message)

        async def verify_signature(request: Request) -> Optional[response.HTTPResponse]:
            if request.path.rstrip("/").endswith("/webhook") and not self.is_request_from_slack_authentic(request):
                return forbidden("Slack request without a valid X-Slack-Signature")
            return None

        webhook.middleware(verify_signature, "request")
        return webhook
