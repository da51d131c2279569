"""The staff console: a Sanic blueprint at /console with server-rendered pages (Jinja2, autoescaped).

Every route needs a signed-in staff member except the sign-in page and the stylesheet; every POST
needs the session's CSRF token. Data access is clinicbot.storage.ConsoleStore; nothing else runs SQL.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sanic import Blueprint, response
from sanic.request import Request
from sqlalchemy.exc import NoResultFound

from clinicbot.console import auth
from clinicbot.console.export import EXPORTS, Exporter
from clinicbot.console.redaction import pseudonym
from clinicbot.console.presenters import (
    FLAG_LABELS,
    LEVELS,
    BadRequest,
    bounded_range,
    conversation_filter,
    daily_chart,
    date_range,
    query_string,
    transcript,
)
from clinicbot.settings import DEFAULT_CONSOLE_SECRET, Settings, load_settings
from clinicbot.storage import QUEUE_STATUSES, QUEUE_TABLES, ConsoleStore

logger = logging.getLogger(__name__)
audit = logging.getLogger("clinicbot.console.audit")
HERE = Path(__file__).resolve().parent
PREFIX = "/console"
PUBLIC_PATHS = {f"{PREFIX}/login", f"{PREFIX}/static/console.css"}
FAILURES_PER_USER = 5
FAILURES_PER_ADDRESS = 20  # a clinic's staff often share one public address
FAILURE_WINDOW_SECONDS = 15 * 60
QUEUE_VIEWS = {"open": ("new", "contacted"), "all": None, **{status: (status,) for status in QUEUE_STATUSES}}
KIND_LABELS = {"booking": "Booking", "triage": "Red flag", "handoff": "Asked for a person"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


# Which roles may open which page (the first part of the path after /console), and the navigation they see.
# Front desk: the follow-up queue, with names and contact details to call patients back, and its status changes.
# Clinicians: everything about patients. Admins: the audit trail; accounts are managed with the users CLI.
PAGE_ROLES = {
    "conversations": {"clinician"},
    "transcript": {"clinician"},
    "queue": {"front_desk", "clinician"},
    "feedback": {"clinician"},
    "insight": {"front_desk", "clinician", "admin"},
    "export": {"clinician"},
    "export.csv": {"clinician"},
    "audit": {"clinician", "admin"},
}
NAVIGATION = [("conversations", "Conversations"), ("queue", "Queue"), ("feedback", "Feedback"), ("insight", "Insight"),
              ("export", "Export"), ("audit", "Audit")]


def page_of(path: str) -> str:
    return path[len(PREFIX):].strip("/").split("/", 1)[0]


def allowed(role: str, path: str) -> bool:
    """Pages not in PAGE_ROLES (the home redirect, sign-out) are open to every signed-in role."""
    page = page_of(path)
    return page not in PAGE_ROLES or role in PAGE_ROLES[page]


def navigation(role: str):
    return [(f"{PREFIX}/{page}", label) for page, label in NAVIGATION if role in PAGE_ROLES[page]]

def _templates() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every value is HTML-escaped unless a template says otherwise (none does)
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["localtime"] = lambda value, fmt="%Y-%m-%d %H:%M": value.astimezone().strftime(fmt) if value else ""
    environment.filters["percent"] = lambda value: f"{100 * value:.0f}%" if value is not None else ""
    environment.filters["conf"] = lambda value: f"{value:.2f}" if isinstance(value, (int, float)) else ""
    environment.filters["urlquote"] = lambda value: quote(str(value), safe="")
    environment.globals.update(
        FLAG_LABELS=FLAG_LABELS, LEVELS=LEVELS, QUEUE_STATUSES=QUEUE_STATUSES, KIND_LABELS=KIND_LABELS, query_string=query_string
    )
    return environment


def _safe_next(target: Optional[str]) -> str:
    """Only ever redirect back into the console (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"  # home: the first page the user's role may open


def _client_address(request: Request) -> str:
    # remote_addr is set only when Sanic is configured to trust a proxy (PROXIES_COUNT / FORWARDED_SECRET);
    # otherwise the socket's peer address, which a client cannot forge.
    return request.remote_addr or request.ip or "unknown"


def console_blueprint(store: Optional[ConsoleStore] = None, settings: Optional[Settings] = None) -> Blueprint:
    settings = settings or load_settings()
    blueprint = Blueprint("console", url_prefix=PREFIX, strict_slashes=False)
    templates = _templates()
    sessions = auth.SessionCodec(settings.console_secret, settings.console_session_minutes * 60)
    per_user = auth.RateLimiter(FAILURES_PER_USER, FAILURE_WINDOW_SECONDS)
    per_address = auth.RateLimiter(FAILURES_PER_ADDRESS, FAILURE_WINDOW_SECONDS)
    state: dict = {"store": store}
    lock = threading.Lock()
    if settings.console_secret == DEFAULT_CONSOLE_SECRET:
        logger.warning("CONSOLE_SECRET is the development default: set it before the console holds real data")

    def get_store() -> ConsoleStore:
        with lock:
            if state["store"] is None:  # lazily: no database work at import or blueprint creation
                state["store"] = ConsoleStore(settings.database_url, settings.tracker_store_url, settings.outbox_dir)
            state["store"].ensure_schema()
            return state["store"]

    def record(request: Request, action: str, target: str = "", detail: str = "", username: Optional[str] = None,
               role: Optional[str] = None, conversation: bool = False) -> None:
        """The audit trail: a row in audit_log (what clinicians see) and a log line. The log names a
        conversation by its pseudonym, never by the sender id (a phone number on WhatsApp)."""
        user = getattr(request.ctx, "user", None) or {}
        username = username if username is not None else user.get("username")
        role = role if role is not None else user.get("role")
        address = _client_address(request)
        get_store().record_audit(action, username, role, target, detail, address)
        shown = pseudonym(settings.pseudonym_secret, target) if conversation and target else target
        audit.info("%s user=%s role=%s target=%s address=%s", action, username, role, shown, address)

    def render(request: Request, template: str, status: int = 200, **context: Any):
        user = getattr(request.ctx, "user", None)
        session = getattr(request.ctx, "session", None)
        html = templates.get_template(template).render(
            user=user, csrf_token=session.csrf if session else "", path=request.path,
            nav=navigation(user["role"]) if user else [], can=lambda page: bool(user) and allowed(user["role"], f"{PREFIX}/{page}"),
            **context,
        )
        return response.html(html, status=status)

    def error_page(request: Request, status: int, message: str):
        return render(request, "error.html", status=status, status_code=status, message=message)

    def current_session(request: Request):
        session = sessions.read(request.cookies.get(auth.SessionCodec.COOKIE))
        if session is None:
            return None, None
        user = get_store().get_staff_user(session.username)
        if user is None or auth.password_fingerprint(user["password_hash"]) != session.fingerprint:
            return None, None
        if get_store().session_ended(session.key):  # signed out: the cookie may be replayed until it expires
            return None, None
        return session, {"username": user["username"], "role": auth.role_of(user)}

    @blueprint.middleware("request")
    async def require_sign_in(request: Request):
        if request.path in PUBLIC_PATHS:
            return None
        session, user = current_session(request)
        if user is None:
            if request.method == "GET" and not request.path.endswith(".csv"):
                target = request.path + (f"?{request.query_string}" if request.query_string else "")
                return response.redirect(f"{PREFIX}/login?next={quote(target, safe='')}")
            return response.text("Sign in required.", status=401)
        request.ctx.session, request.ctx.user = session, user
        if request.method == "POST" and not auth.tokens_match(session.csrf, request.form.get("csrf_token")):
            return response.text("Missing or wrong CSRF token: reload the page and try again.", status=403)
        if not allowed(user["role"], request.path):
            record(request, "refused", target=page_of(request.path))
            return error_page(request, 403, f"This page is not open to the {user['role'].replace('_', ' ')} role.")
        return None

    @blueprint.middleware("response")
    async def security_headers(request: Request, resp):
        resp.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        if request.scheme == "https":  # the browser then refuses plain http to the console for a year
            resp.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if request.path not in PUBLIC_PATHS or request.path.endswith("/login"):
            resp.headers["Cache-Control"] = "no-store"

    @blueprint.get("/static/console.css")
    async def stylesheet(request: Request):
        return await response.file(str(HERE / "static" / "console.css"), mime_type="text/css")

    # -- sign in / out ------------------------------------------------------------------------------
    def login_page(request: Request, status: int = 200, error: str = "", username: str = "", next_url: str = ""):
        token = sessions.read_login_token(request.cookies.get(auth.SessionCodec.LOGIN_COOKIE))
        cookie = None
        if token is None:
            cookie = sessions.issue_login_token()
            token = sessions.read_login_token(cookie)
        resp = render(request, "login.html", status=status, error=error, username=username, next_url=next_url, login_token=token)
        if cookie is not None:
            _set_cookie(request, resp, auth.SessionCodec.LOGIN_COOKIE, cookie, max_age=3600)
        return resp

    @blueprint.get("/login")
    async def login_form(request: Request):
        return login_page(request, next_url=_safe_next(request.args.get("next")))

    @blueprint.post("/login")
    async def login(request: Request):
        form = request.form
        username = auth.normalise_username(form.get("username", ""))[:100]
        next_url = _safe_next(form.get("next"))
        expected = sessions.read_login_token(request.cookies.get(auth.SessionCodec.LOGIN_COOKIE))
        if not auth.tokens_match(expected, form.get("csrf_token")):
            return response.text("Missing or wrong CSRF token: reload the sign-in page and try again.", status=403)
        address_key, user_key = f"ip:{_client_address(request)}", f"user:{username}"
        if per_address.blocked(address_key) or per_user.blocked(user_key):
            wait = max(per_address.retry_after(address_key), per_user.retry_after(user_key))
            record(request, "sign-in-refused", detail="rate limit", username=username)
            resp = login_page(
                request, status=429, username=username, next_url=next_url,
                error=f"Too many failed sign-ins. Try again in {max(1, wait // 60)} minute(s).",
            )
            resp.headers["Retry-After"] = str(wait)
            return resp
        user = get_store().get_staff_user(username) if username else None
        # scrypt takes ~0.1 s and 32 MiB: off the event loop, so a sign-in never stalls other staff.
        verified = await asyncio.get_running_loop().run_in_executor(
            None, auth.verify_password, form.get("password", ""), user["password_hash"] if user else None
        )
        if not verified:
            per_address.fail(address_key)
            per_user.fail(user_key)
            record(request, "sign-in-failed", username=username)
            return login_page(request, status=401, username=username, next_url=next_url, error="Wrong user name or password.")
        per_user.reset(user_key)
        record(request, "sign-in", username=user["username"], role=auth.role_of(user))
        resp = response.redirect(next_url)
        cookie = sessions.issue(user["username"], auth.password_fingerprint(user["password_hash"]))
        _set_cookie(request, resp, auth.SessionCodec.COOKIE, cookie, max_age=settings.console_session_minutes * 60)
        _set_cookie(request, resp, auth.SessionCodec.LOGIN_COOKIE, "", max_age=0)
        return resp

    @blueprint.post("/logout")
    async def logout(request: Request):
        record(request, "sign-out")
        get_store().end_session(request.ctx.session.key, keep_for=timedelta(minutes=settings.console_session_minutes))
        resp = response.redirect(f"{PREFIX}/login")
        _set_cookie(request, resp, auth.SessionCodec.COOKIE, "", max_age=0)
        return resp

    # -- pages ---------------------------------------------------------------------------------------
    @blueprint.get("/")
    async def home(request: Request):
        pages = navigation(request.ctx.user["role"])
        return response.redirect(pages[0][0] if pages else f"{PREFIX}/login")

    @blueprint.get("/conversations")
    async def conversations(request: Request):
        try:
            flt, values = conversation_filter(request.args)
        except BadRequest as error:
            return error_page(request, 400, str(error))
        store = get_store()
        rows, total = store.list_conversations(flt)
        record(request, "conversations", detail=request.query_string)
        pages = max(1, -(-total // flt.limit))
        return render(
            request, "conversations.html", rows=rows, total=total, values=values, pages=pages,
            channels=store.conversation_channels(),
        )

    @blueprint.get("/transcript")
    async def conversation(request: Request):
        conversation_id = request.args.get("id", "")
        store = get_store()
        events = store.conversation_events(conversation_id) if conversation_id else []
        records = store.conversation_records(conversation_id) if conversation_id else {}
        if not events and not any(records.values()):
            return error_page(request, 404, "No conversation with that id.")
        record(request, "transcript", target=conversation_id, conversation=True)
        return render(
            request, "transcript.html", conversation_id=conversation_id, turns=transcript(events), records=records,
            back=_safe_next(request.args.get("back")),
        )

    @blueprint.get("/queue")
    async def queue(request: Request):
        view = request.args.get("view", "open")
        if view not in QUEUE_VIEWS:
            return error_page(request, 400, "Unknown queue view.")
        try:
            start, end, values = date_range(request.args)
        except BadRequest as error:
            return error_page(request, 400, str(error))
        items = get_store().queue_items(statuses=QUEUE_VIEWS[view], start=start, end=end)
        record(request, "queue", target=view, detail=request.query_string)
        return render(request, "queue.html", items=items, view=view, views=list(QUEUE_VIEWS), values=values)

    @blueprint.post("/queue/<kind:str>/<item_id:int>/status")
    async def change_status(request: Request, kind: str, item_id: int):
        status = request.form.get("status", "")
        if kind not in QUEUE_TABLES or status not in QUEUE_STATUSES:
            return error_page(request, 400, "Unknown item kind or status.")
        try:
            get_store().set_status(kind, item_id, status, changed_by=request.ctx.user["username"])
        except NoResultFound:
            return error_page(request, 404, "No such queue item.")
        record(request, "status", target=f"{kind} {item_id}", detail=status)
        return response.redirect(_safe_next(request.form.get("next") or f"{PREFIX}/queue"))

    @blueprint.get("/feedback")
    async def feedback(request: Request):
        try:
            start, end, values = date_range(request.args)
        except BadRequest as error:
            return error_page(request, 400, str(error))
        store = get_store()
        record(request, "feedback", detail=request.query_string)  # recent complaints quote what patients typed
        return render(
            request, "feedback.html", topics=store.feedback_summary(start, end), recent=store.recent_negative_feedback(),
            values=values,
        )

    @blueprint.get("/insight")
    async def insight(request: Request):
        try:
            start, end, values = bounded_range(request.args, default_days=30)
        except BadRequest as error:
            return error_page(request, 400, str(error))
        data = get_store().insight(start, end)
        chart = daily_chart(
            data["conversation_starts"], data["booking_times"], start.date(), (end - timedelta(days=1)).date()
        )
        typed = data["typed_messages"]
        return render(
            request, "insight.html", data=data, chart=chart, values=values,
            conversations=len(data["conversation_starts"]), bookings=len(data["booking_times"]),
            fallback_rate=(data["fallback_messages"] / typed) if typed else None,
        )

    @blueprint.get("/export")
    async def export_form(request: Request):
        today = datetime.now().astimezone().date().isoformat()
        return render(request, "export.html", exports=EXPORTS, today=today)

    @blueprint.get("/export.csv")
    async def export_csv(request: Request):
        what = request.args.get("what", "")
        if what not in EXPORTS:
            return response.text("what: conversations, messages or queue", status=400)
        identifiable = request.args.get("identifiable") in ("1", "on", "true")
        user = request.ctx.user
        if identifiable and user["role"] != "clinician":
            record(request, "export-refused", target=what, detail="identifiable")
            return response.text("Identifiable exports need the clinician role.", status=403)
        try:
            start, end, values = bounded_range(request.args, default_days=1)
        except BadRequest as error:
            return response.text(str(error), status=400)
        body = Exporter(get_store(), settings.pseudonym_secret, identifiable).export(what, start, end)
        record(request, "export", target=what, detail=f"{values['from']}..{values['to']} identifiable={identifiable}")
        suffix = "identifiable" if identifiable else "redacted"
        filename = f"{what}-{values['from']}-to-{values['to']}-{suffix}.csv"
        return response.text(
            body, content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @blueprint.get("/audit")
    async def audit_trail(request: Request):
        record(request, "audit")
        return render(request, "audit.html", entries=get_store().audit_entries())

    return blueprint


def _set_cookie(request: Request, resp, name: str, value: str, max_age: int) -> None:
    resp.cookies[name] = value
    cookie = resp.cookies[name]
    cookie["path"] = PREFIX
    cookie["httponly"] = True
    cookie["samesite"] = "Strict"
    cookie["max-age"] = max_age
    if request.scheme == "https":
        cookie["secure"] = True
