"""The action server: rasa-sdk's own app, on loopback, answering only the Rasa server.

A tracker posted to /webhook makes the actions write bookings and handoffs, so a caller who could reach it could
forge them. rasa-sdk has no authentication and listens on 0.0.0.0 by default; here it listens on
ACTION_SERVER_HOST (127.0.0.1 by default) and every call but /health must carry the shared secret in
X-Action-Server-Secret, which the Rasa server sends from the endpoints file clinicbot/run.py writes.

    python -m clinicbot.action_server --port 5055      (ACTION_SERVER_SECRET must be set)
"""
from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Optional

from rasa_sdk.endpoint import create_app
from sanic import Sanic, response
from sanic.request import Request

from clinicbot.channels.common import secret_matches
from clinicbot.settings import load_settings, refuse_unsafe_production

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Action-Server-Secret"
# Rasa posts the whole domain and tracker with every action call (about 100 KB at the start of a conversation,
# growing with it), so the action server cannot have the public servers' 64 KB cap. It answers only the Rasa
# server (loopback and the secret); this only bounds what a runaway caller can make it hold.
REQUEST_MAX_BYTES = 32 * 1024 * 1024
# Bookings queued while the database was down are written at start and then on this schedule, not only when the
# next booking comes in.
OUTBOX_FLUSH_SECONDS = 60


def create_action_app(secret: str, actions_package: str = "actions") -> Sanic:
    if not secret:
        raise ValueError("the action server needs ACTION_SERVER_SECRET")
    # No CORS: no browser ever calls the action server.
    app = create_app(actions_package, cors_origins=None)
    app.config.REQUEST_MAX_SIZE = REQUEST_MAX_BYTES

    @app.middleware("request")
    async def require_secret(request: Request) -> Optional[response.HTTPResponse]:
        if request.path == "/health":
            return None
        if not secret_matches(secret, request.headers.get(SECRET_HEADER)):
            logger.warning("action server: refused a call to %s without the shared secret", request.path)
            return response.json({"error": "forbidden"}, status=403)
        return None

    @app.listener("after_server_start")
    async def flush_outbox_on_schedule(app: Sanic, loop) -> None:
        app.add_task(_flush_outbox_forever())

    return app


async def _flush_outbox_forever() -> None:
    from clinicbot.storage import default_store

    while True:
        try:
            # database work off the event loop: a slow database must not stall the actions of other patients
            written = await asyncio.get_running_loop().run_in_executor(None, default_store().flush_outbox)
            if written:
                logger.info("booking outbox: %d queued booking(s) written to the database", written)
        except Exception:
            logger.exception("booking outbox: flush failed; retrying in %d s", OUTBOX_FLUSH_SECONDS)
        await asyncio.sleep(OUTBOX_FLUSH_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5055)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    refuse_unsafe_production(settings)
    if not settings.action_server_secret:
        raise SystemExit("ACTION_SERVER_SECRET is not set (`make run` makes one; see .env.example).")
    app = create_action_app(settings.action_server_secret)
    app.run(settings.action_server_host, args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
