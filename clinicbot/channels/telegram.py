"""Telegram, configured from TELEGRAM_TOKEN, TELEGRAM_SECRET_TOKEN and TELEGRAM_WEBHOOK_URL.

Off (no routes) unless TELEGRAM_TOKEN and TELEGRAM_SECRET_TOKEN are both set. Differences from Rasa's TelegramInput:
- Every update must carry X-Telegram-Bot-Api-Secret-Token = TELEGRAM_SECRET_TOKEN, else 403. At server start the
  webhook is registered with that secret_token (aiogram 2.15 predates the parameter, so the raw API call is made).
- No getMe call per update (Rasa checks the bot's own username, which authenticates nothing).
- Only private chats: in a group, every member would share one conversation.
- Buttons are one per row (Rasa puts them all in one row); "/start" greets; a button press is acknowledged
  (answerCallbackQuery) so the button stops spinning; a photo or sticker gets a kind "text only" reply.
- An error while handling a message is logged and answered 200, so Telegram does not re-deliver it.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from rasa.core.channels.telegram import TelegramOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from clinicbot.channels.common import (
    Deliveries,
    ProjectCustomMixin,
    forbidden,
    log_channel_state,
    missing,
    numbered_options,
    rate_limited,
    resolve_numbered_reply,
    secret_matches,
    settings,
)

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_ONLY_REPLY = "Sorry, I can only read text messages. Please type your question."
CALLBACK_DATA_MAX_BYTES = 64  # Telegram's limit for a button's callback_data


class TelegramBotOutput(ProjectCustomMixin, TelegramOutput):
    async def send_text_with_buttons(
        self, recipient_id: Text, text: Text, buttons: List[Dict[Text, Any]], **kwargs: Any
    ) -> None:
        if any(len(str(b.get("payload", "")).encode("utf-8")) > CALLBACK_DATA_MAX_BYTES for b in buttons):
            await self.send_message(recipient_id, numbered_options(text, buttons))
            return
        kwargs.setdefault("button_type", "vertical")
        await super().send_text_with_buttons(recipient_id, text, buttons, **kwargs)


class TelegramChannel(InputChannel):
    """credentials.yml: `clinicbot.channels.telegram.TelegramChannel:` (no keys; see .env.example)."""

    ENV = {"token": "TELEGRAM_TOKEN", "secret_token": "TELEGRAM_SECRET_TOKEN"}

    @classmethod
    def name(cls) -> Text:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        s = settings()
        return cls(s.telegram_token, s.telegram_secret_token, s.telegram_webhook_url)

    def __init__(self, token: Optional[str], secret_token: Optional[str], webhook_url: Optional[str]) -> None:
        self.token = token
        self.secret_token = secret_token
        self.webhook_url = webhook_url
        self.missing = missing(token=token, secret_token=secret_token)
        self.deliveries = Deliveries(settings().redis_url)

    @property
    def enabled(self) -> bool:
        return not self.missing

    def get_output_channel(self) -> Optional[OutputChannel]:
        return TelegramBotOutput(self.token) if self.enabled else None

    async def register_webhook(self) -> bool:
        """setWebhook with the secret token; Telegram then sends it in SECRET_HEADER with every update."""
        if not (self.enabled and self.webhook_url):
            return False
        bot = TelegramBotOutput(self.token)
        try:
            result = await bot.request(
                "setWebhook",
                {
                    "url": self.webhook_url,
                    "secret_token": self.secret_token,
                    "allowed_updates": '["message", "edited_message", "callback_query"]',
                },
            )
            logger.info("Telegram webhook set to %s", self.webhook_url)
            return bool(result)
        except Exception:
            # The website and the other channels keep working; GET /webhooks/telegram/set_webhook retries.
            logger.exception("Could not set the Telegram webhook")
            return False
        finally:
            await bot.session.close()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        on_new_message = rate_limited(on_new_message, self.name())
        webhook = Blueprint("telegram_webhook", __name__)
        log_channel_state("Telegram", self.missing, self.ENV)
        if not self.enabled:
            return webhook

        @webhook.listener("after_server_start")
        async def set_webhook_on_start(app: Any, loop: Any) -> None:
            await self.register_webhook()

        @webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/set_webhook", methods=["POST"])
        async def set_webhook(request: Request) -> HTTPResponse:
            if not secret_matches(self.secret_token, request.headers.get(SECRET_HEADER)):
                return forbidden("Telegram set_webhook without the secret token")
            ok = await self.register_webhook()
            return response.json({"ok": ok}, status=200 if ok else 502)

        @webhook.route("/webhook", methods=["POST"])
        async def message(request: Request) -> HTTPResponse:
            if not secret_matches(self.secret_token, request.headers.get(SECRET_HEADER)):
                return forbidden("Telegram update without the secret token")
            update = request.json if request.body else None
            if not isinstance(update, dict):
                return response.text("bad request", status=400)
            if not await self.deliveries.first_time(self.name(), update.get("update_id")):
                return response.text("success")  # a redelivery: already answered
            await self._handle_update(request, update, on_new_message)
            return response.text("success")

        return webhook

    async def _handle_update(
        self, request: Request, update: Dict[str, Any], on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> None:
        callback = update.get("callback_query")
        if callback:
            msg = callback.get("message") or {}
            text = callback.get("data")
        else:
            msg = update.get("message") or update.get("edited_message") or {}
            text = msg.get("text")
        chat = msg.get("chat") or {}
        if chat.get("id") is None or chat.get("type", "private") != "private":
            return
        sender_id = str(chat["id"])
        out = TelegramBotOutput(self.token)
        try:
            if callback and callback.get("id"):
                await out.answer_callback_query(callback["id"])
            if text is None:
                await out.send_message(sender_id, TEXT_ONLY_REPLY)
                return
            if text.strip() in {"/start", "/help"}:
                text = "/greet"
            else:
                text = await resolve_numbered_reply(request.app, sender_id, text)
            await on_new_message(
                UserMessage(text, out, sender_id, input_channel=self.name(), metadata=self.get_metadata(request))
            )
        except Exception:
            logger.exception("Telegram update could not be handled")
        finally:
            await out.session.close()  # (Bot.close() is deprecated in aiogram 2.x)
