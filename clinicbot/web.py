"""The clinic's web app: the chat widget page (public) and the staff console (/console, signed-in staff only).

One small Sanic process beside the Rasa server; Sanic is already pinned by Rasa, so no new framework.
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from sanic import Sanic, response

from clinicbot.settings import PROJECT_ROOT, load_settings, refuse_unsafe_production

WIDGET_DIR = PROJECT_ROOT / "widget"
RASA_URL_PLACEHOLDER = "__RASA_URL__"


def widget_rasa_url(request_host: str, rasa_port: int) -> str:
    """Where the page's browser reaches the Rasa server: WIDGET_RASA_URL, else this host on the Rasa port."""
    configured = load_settings().widget_rasa_url
    if configured:
        return configured.rstrip("/")
    hostname = urlsplit(f"//{request_host}").hostname or ""
    if not re.fullmatch(r"[A-Za-z0-9.-]+", hostname):  # the Host header is the client's: allow plain names only
        hostname = "localhost"
    return f"http://{hostname}:{rasa_port}"


def widget_page_headers(rasa_url: str) -> dict:
    """Every asset of the widget page comes from this server; the only connection is to the Rasa server."""
    parts = urlsplit(rasa_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    socket_origin = ("wss" if parts.scheme == "https" else "ws") + f"://{parts.netloc}"
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {origin} {socket_origin}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def create_app(rasa_port: int = 5005, name: str = "pelvic_health_web") -> Sanic:
    from clinicbot.console.app import console_blueprint

    app = Sanic(name)
    app.config.RASA_PORT = rasa_port
    # Sanic's default body limit is 100 MB; a sign-in form or a status change needs a few hundred bytes.
    app.config.REQUEST_MAX_SIZE = load_settings().request_max_bytes
    # Behind the clinic's TLS proxy: its X-Forwarded-Proto makes request.scheme "https" (Secure cookies, HSTS).
    app.config.PROXIES_COUNT = load_settings().trusted_proxies
    app.static("/widget", str(WIDGET_DIR))

    @app.get("/")
    async def index(request):
        rasa_url = widget_rasa_url(request.host, app.config.RASA_PORT)
        page = (WIDGET_DIR / "index.html").read_text(encoding="utf-8")
        page = page.replace(RASA_URL_PLACEHOLDER, rasa_url.replace('"', "%22").replace("<", "%3C"))
        return response.html(page, headers=widget_page_headers(rasa_url))

    @app.get("/healthz")
    async def healthz(request):
        return response.json({"status": "ok"})

    app.blueprint(console_blueprint())
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Widget page and staff console")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--rasa-port", type=int, default=5005)
    args = parser.parse_args()
    # The console's audit lines (clinicbot.console.audit) and warnings reach the web app's log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    refuse_unsafe_production(load_settings())
    create_app(args.rasa_port).run(host=load_settings().bind_host, port=args.port, access_log=False, workers=1)


if __name__ == "__main__":
    main()
