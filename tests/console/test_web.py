"""The console over HTTP (in-process Sanic app, the stack's real database): sign-in, sessions, CSRF,
rate limit, pages, escaping, and status changes that outlive the app instance."""
from __future__ import annotations

import re
import time
import uuid

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sanic_testing.testing import SanicASGITestClient

from clinicbot.console.auth import (
    MAX_PASSWORD_LENGTH, SessionCodec, hash_password, password_fingerprint, password_problem, verify_password,
)
from console_helpers import PASSWORD, csrf_from, make_app, sign_in
from scripted_patients import BOOKING_NAME, MARKUP

PAGES = [
    "/console",
    "/console/conversations",
    "/console/conversations?red_flag=1",
    "/console/transcript?id=x",
    "/console/queue",
    "/console/feedback",
    "/console/insight",
    "/console/export",
]


def ids_on_page(html: str):
    return set(re.findall(r'data-conversation="([^"]+)"', html))


# -- nothing without signing in --------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
async def test_pages_redirect_to_sign_in_when_signed_out(client, conversations, page):
    _, response = await client.get(page)
    assert response.status_code == 302
    assert response.headers["location"].startswith("/console/login?next=")
    assert conversations["booking"] not in response.text


async def test_transcript_and_export_refused_when_signed_out(client, conversations):
    _, response = await client.get("/console/transcript", params={"id": conversations["booking"]})
    assert response.status_code == 302 and BOOKING_NAME not in response.text
    _, response = await client.get("/console/export.csv", params={"what": "queue"})
    assert response.status_code == 401 and BOOKING_NAME not in response.text


async def test_posts_refused_when_signed_out(client, console_store, conversations):
    booking = next(b for b in console_store.list_bookings() if b["conversation_id"] == conversations["booking"])
    _, response = await client.post(f"/console/queue/booking/{booking['id']}/status", data={"status": "closed"})
    assert response.status_code == 401
    assert console_store.queue_item("booking", booking["id"])["status"] != "closed"


async def test_forged_or_tampered_cookie_is_not_a_session(client, accounts):
    forged = "eyJ1IjoiYWRtaW4ifQ.forged.signature"
    _, response = await client.get("/console/conversations", headers={"Cookie": f"{SessionCodec.COOKIE}={forged}"})
    assert response.status_code == 302


# -- sign-in ---------------------------------------------------------------------------------------
async def test_sign_in_then_pages_render(clinician_client, conversations):
    for page in PAGES[1:]:
        _, response = await clinician_client.get(page)
        assert response.status_code in (200, 302, 404), page
    _, response = await clinician_client.get("/console/conversations")
    assert response.status_code == 200
    assert set(conversations.values()) <= ids_on_page(response.text)
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_wrong_password_is_refused(client, accounts):
    response = await sign_in(client, accounts["front_desk"][0], "not the password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    _, page = await client.get("/console/conversations")
    assert page.status_code == 302


async def test_sign_in_only_redirects_inside_the_console(client, accounts):
    response = await sign_in(client, *accounts["front_desk"], next_url="https://evil.example/")
    assert response.status_code == 302 and response.headers["location"] == "/console/"
    _, home = await client.get("/console/")
    assert home.headers["location"] == "/console/queue"  # the front desk's first page


async def test_session_expires(console_store, console_settings, accounts, conversations):
    """A session cookie signed longer ago than CONSOLE_SESSION_MINUTES is refused; the same cookie signed now works."""
    user = console_store.get_staff_user(accounts["clinician"][0])

    def cookie(age_seconds: int) -> str:
        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - age_seconds

        serializer = URLSafeTimedSerializer(
            console_settings.console_secret, salt="clinicbot.console.session", signer=Signer
        )
        return serializer.dumps({"u": user["username"], "c": "token", "f": password_fingerprint(user["password_hash"])})

    app = make_app(console_store, console_settings)
    for age, expected in ((60, 200), (console_settings.console_session_minutes * 60 + 5, 302)):
        client = SanicASGITestClient(app)
        _, response = await client.get("/console/conversations", headers={"Cookie": f"{SessionCodec.COOKIE}={cookie(age)}"})
        assert response.status_code == expected, age


async def test_password_change_ends_sessions(client, console_store):
    name = "temp-user"
    if console_store.get_staff_user(name) is None:
        console_store.create_staff_user(name, hash_password(PASSWORD), "front_desk")
    assert (await sign_in(client, name, PASSWORD)).status_code == 302
    assert (await client.get("/console/queue"))[1].status_code == 200
    console_store.set_staff_password(name, hash_password("a brand new password"))
    assert (await client.get("/console/queue"))[1].status_code == 302
    console_store.delete_staff_user(name)


# -- CSRF --------------------------------------------------------------------------------------------
async def test_sign_in_without_csrf_token_is_forbidden(client, accounts):
    await client.get("/console/login")
    _, response = await client.post("/console/login", data={"username": accounts["front_desk"][0], "password": PASSWORD})
    assert response.status_code == 403


async def test_status_change_without_or_with_wrong_csrf_token_is_forbidden(front_desk_client, console_store, conversations):
    item = next(i for i in console_store.queue_items() if i["conversation_id"] == conversations["handoff"])
    url = f"/console/queue/handoff/{item['id']}/status"
    _, response = await front_desk_client.post(url, data={"status": "closed"})
    assert response.status_code == 403
    _, response = await front_desk_client.post(url, data={"status": "closed", "csrf_token": "guessed"})
    assert response.status_code == 403
    assert console_store.queue_item("handoff", item["id"])["status"] == item["status"]


async def test_sign_out_needs_csrf_token(front_desk_client):
    _, response = await front_desk_client.post("/console/logout", data={})
    assert response.status_code == 403
    _, page = await front_desk_client.get("/console/queue")
    _, response = await front_desk_client.post("/console/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    _, response = await front_desk_client.get("/console/queue")
    assert response.status_code == 302


# -- rate limit ----------------------------------------------------------------------------------------
async def test_five_failures_for_a_user_name_then_429_even_with_the_right_password(client, accounts):
    name = accounts["clinician"][0]
    for _ in range(5):
        assert (await sign_in(client, name, "wrong password")).status_code == 401
    response = await sign_in(client, name, PASSWORD)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    # Another user from the same address is not locked out by this.
    assert (await sign_in(client, accounts["front_desk"][0], PASSWORD)).status_code == 302


async def test_many_failures_from_one_address_then_429(client, accounts):
    for attempt in range(20):
        assert (await sign_in(client, f"nobody-{attempt}", "wrong password")).status_code == 401
    assert (await sign_in(client, accounts["front_desk"][0], PASSWORD)).status_code == 429


# -- pages ---------------------------------------------------------------------------------------------
async def test_red_flag_filter_page_lists_only_red_flag_conversations(clinician_client, conversations):
    _, response = await clinician_client.get("/console/conversations", params={"red_flag": "1"})
    shown = ids_on_page(response.text)
    assert {conversations[k] for k in ("booking", "emergency", "urgent")} <= shown
    assert not {conversations[k] for k in ("helpful", "handoff", "fallback", "negative_feedback")} & shown
    _, response = await clinician_client.get("/console/conversations", params={"handoff": "1"})
    assert conversations["handoff"] in ids_on_page(response.text)
    assert conversations["booking"] not in ids_on_page(response.text)
    _, response = await clinician_client.get("/console/conversations", params={"q": "fever", "channel": "rest"})
    assert conversations["urgent"] in ids_on_page(response.text)
    _, response = await clinician_client.get("/console/conversations", params={"from": "2001-01-01", "to": "2001-01-02"})
    assert not ids_on_page(response.text)
    _, response = await clinician_client.get("/console/conversations", params={"from": "yesterday"})
    assert response.status_code == 400


async def test_transcript_shows_the_conversation_triage_with_the_message_each_finding_came_from(clinician_client, conversations):
    _, response = await clinician_client.get("/console/transcript", params={"id": conversations["emergency_across_turns"]})
    html = response.text
    assert "Conversation triage after message 2" in html
    assert 'class="badge level-emergency">EMERGENCY' in html
    assert re.search(r"message 1: back pain — affirmed \((lexicon|semantic)\)", html)
    assert re.search(r"message 2: saddle numbness — affirmed \((lexicon|semantic)\)", html)


async def test_transcript_shows_markup_as_text(clinician_client, conversations):
    _, response = await clinician_client.get("/console/transcript", params={"id": conversations["markup"]})
    assert response.status_code == 200
    assert "<script>alert" not in response.text and "<b>bold</b>" not in response.text
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in response.text
    # The search box echoes the query escaped too.
    _, response = await clinician_client.get("/console/conversations", params={"q": MARKUP})
    assert "<script>alert" not in response.text and conversations["markup"] in ids_on_page(response.text)


async def test_transcript_shows_intent_confidence_and_triage(clinician_client, conversations):
    _, response = await clinician_client.get("/console/transcript", params={"id": conversations["emergency"]})
    html = response.text
    assert "I can&#39;t feel anything between my legs" in html
    assert "red_flag_emergency" in html and "1.00" in html
    assert 'class="badge level-emergency">EMERGENCY' in html
    assert "<mark>" in html  # the matched words
    _, response = await clinician_client.get("/console/transcript", params={"id": "no-such-conversation"})
    assert response.status_code == 404


async def test_queue_puts_emergency_and_urgent_first(clinician_client, conversations):
    _, response = await clinician_client.get("/console/queue", params={"view": "all"})
    items = re.findall(r'<li class="item( urgent)?" data-item="([a-z]+-\d+)"', response.text)
    flags = [bool(urgent) for urgent, _ in items]
    assert flags and flags[0] and flags == sorted(flags, reverse=True)


async def test_feedback_and_insight_pages(clinician_client, conversations):
    _, response = await clinician_client.get("/console/feedback")
    assert 'data-topic="back_pain_after_sex_causes"' in response.text
    _, response = await clinician_client.get("/console/insight")
    assert response.status_code == 200 and "<svg" in response.text and 'class="bar-conversations"' in response.text


# -- status changes persist ------------------------------------------------------------------------------
async def test_status_change_is_stored_with_who_and_when_and_survives_a_new_app(
    front_desk_client, console_store, console_settings, accounts, conversations, stack_env
):
    from clinicbot.storage import ConsoleStore

    item = next(i for i in console_store.queue_items() if i["conversation_id"] == conversations["urgent"])
    _, page = await front_desk_client.get("/console/queue")
    _, response = await front_desk_client.post(
        f"/console/queue/triage/{item['id']}/status",
        data={"status": "contacted", "csrf_token": csrf_from(page.text), "next": "/console/queue"},
    )
    assert response.status_code == 302 and response.headers["location"] == "/console/queue"

    fresh = ConsoleStore(stack_env["DATABASE_URL"])  # a new process would see the same
    stored = fresh.queue_item("triage", item["id"])
    assert stored["status"] == "contacted"
    change = stored["history"][-1]
    assert (change["old_status"], change["new_status"], change["changed_by"]) == ("new", "contacted", accounts["front_desk"][0])
    assert abs(time.time() - change["changed_at"].timestamp()) < 120

    client = SanicASGITestClient(make_app(fresh, console_settings))
    await sign_in(client, *accounts["clinician"])
    _, response = await client.get("/console/queue")
    block = re.search(rf'data-item="triage-{item["id"]}".*?</li>', response.text, re.S).group(0)
    assert "contacted by <strong>" + accounts["front_desk"][0] in block


async def test_unknown_status_or_item_is_rejected(front_desk_client):
    _, page = await front_desk_client.get("/console/queue")
    token = csrf_from(page.text)
    _, response = await front_desk_client.post("/console/queue/booking/1/status", data={"status": "done", "csrf_token": token})
    assert response.status_code == 400
    _, response = await front_desk_client.post("/console/queue/booking/999999/status", data={"status": "closed", "csrf_token": token})
    assert response.status_code == 404



def test_a_password_over_the_cap_is_never_hashed_or_accepted():
    over = "y" * (MAX_PASSWORD_LENGTH + 1)

    assert not verify_password(over, hash_password(over))  # refused before scrypt, even when it would match
    assert "at most 256 characters" in password_problem("z" * 257)
    assert password_problem("z" * 256) is None


def audit_rows(console_store, username):
    return [row for row in console_store.audit_entries(limit=5000) if row["username"] == username]


async def test_every_read_of_patient_data_and_every_sign_in_is_in_the_audit_trail(
    console_app, admin_client, front_desk_client, console_store, accounts, conversations
):
    client = SanicASGITestClient(console_app)  # its own cookies (front_desk_client signed in on the shared `client`)
    name = f"clinician-{uuid.uuid4().hex[:6]}"
    console_store.create_staff_user(name, hash_password(PASSWORD), "clinician")
    await sign_in(client, name, "not the password")
    await sign_in(client, name, PASSWORD)
    conversation_id = conversations["booking"]
    await client.get("/console/conversations", params={"q": "Jane"})
    await client.get("/console/transcript", params={"id": conversation_id})
    await client.get("/console/queue", params={"view": "open"})
    await client.get("/console/feedback")
    await client.get("/console/export.csv", params={"what": "messages"})
    await client.get("/console/export.csv", params={"what": "queue", "identifiable": "1"})

    rows = audit_rows(console_store, name)
    done = [(row["action"], row["target"]) for row in reversed(rows)]
    assert done == [
        ("sign-in-failed", ""), ("sign-in", ""), ("conversations", ""), ("transcript", conversation_id),
        ("queue", "open"), ("feedback", ""), ("export", "messages"), ("export", "queue"),
    ]
    assert {row["role"] for row in rows if row["action"] != "sign-in-failed"} == {"clinician"}
    assert all(row["address"] and row["at"] for row in rows)
    assert "q=Jane" in next(row["detail"] for row in rows if row["action"] == "conversations")
    assert "identifiable=True" in rows[0]["detail"]

    # a page the role may not open is refused, and that is recorded too
    _, refused = await front_desk_client.get("/console/transcript", params={"id": conversation_id})
    assert refused.status_code == 403
    [latest] = audit_rows(console_store, accounts["front_desk"][0])[:1]
    assert (latest["action"], latest["target"]) == ("refused", "transcript")

    # admins read the trail in the console; the front desk may not
    _, page = await admin_client.get("/console/audit")
    assert page.status_code == 200
    assert f"<td>{name}</td><td>clinician</td><td>transcript</td>" in page.text
    _, refused = await front_desk_client.get("/console/audit")
    assert refused.status_code == 403


async def test_a_status_change_is_audited_with_who_and_what(front_desk_client, console_store, accounts, conversations):
    item = next(i for i in console_store.queue_items() if i["kind"] == "handoff")
    _, page = await front_desk_client.get("/console/queue")
    token = csrf_from(page.text)

    await front_desk_client.post(f"/console/queue/handoff/{item['id']}/status", data={"status": "contacted", "csrf_token": token})

    [latest] = [r for r in audit_rows(console_store, accounts["front_desk"][0]) if r["action"] == "status"][:1]
    assert (latest["target"], latest["detail"]) == (f"handoff {item['id']}", "contacted")


async def test_a_session_cookie_replayed_after_sign_out_is_refused(clinician_client):
    cookie = clinician_client.cookies.get(SessionCodec.COOKIE)
    _, page = await clinician_client.get("/console/queue")
    _, response = await clinician_client.post("/console/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302

    clinician_client.cookies.set(SessionCodec.COOKIE, cookie)  # the old cookie, still signed and unexpired
    _, export = await clinician_client.get("/console/export.csv", params={"what": "messages", "identifiable": "1"})
    _, transcript = await clinician_client.get("/console/conversations")

    assert export.status_code == 401
    assert transcript.status_code == 302 and "/console/login" in transcript.headers["location"]


# -- roles (docs/console.md, "Roles"): each role against each page -------------------------------------------
ROLE_PAGES = {  # page -> roles that may open it, as docs/console.md decides
    "/console/conversations": {"clinician"},
    "/console/transcript?id={booking}": {"clinician"},
    "/console/queue": {"front_desk", "clinician"},
    "/console/feedback": {"clinician"},
    "/console/insight": {"front_desk", "clinician", "admin"},
    "/console/export": {"clinician"},
    "/console/export.csv?what=queue": {"clinician"},
    "/console/audit": {"clinician", "admin"},
}


NAVIGATION_OF = {
    "front_desk": {"queue", "insight"},
    "clinician": {"conversations", "queue", "feedback", "insight", "export", "audit"},
    "admin": {"insight", "audit"},
}


@pytest.mark.parametrize("role", ["front_desk", "clinician", "admin"])
async def test_each_role_opens_only_its_pages(console_app, accounts, conversations, role):
    client = SanicASGITestClient(console_app)
    assert (await sign_in(client, *accounts[role])).status_code == 302

    for page, roles in ROLE_PAGES.items():
        _, response = await client.get(page.format(booking=conversations["booking"]))
        assert response.status_code == (200 if role in roles else 403), (role, page)
        if role not in roles:
            assert BOOKING_NAME not in response.text

    _, home = await client.get("/console/")
    nav = re.findall(r'<nav aria-label="Console">(.*?)</nav>', (await client.get(home.headers["location"]))[1].text, re.S)[0]
    shown = set(re.findall(r'href="/console/([a-z.]+)"', nav))
    assert shown == NAVIGATION_OF[role]


async def test_the_front_desk_sees_contact_details_in_the_queue_but_no_transcript_link(front_desk_client, conversations):
    _, response = await front_desk_client.get("/console/queue", params={"view": "all"})

    assert BOOKING_NAME in response.text  # to call the patient back
    assert "/console/transcript" not in response.text


@pytest.mark.parametrize("trusted, secure", [("1", True), ("0", False)])
async def test_behind_a_trusted_tls_proxy_the_console_sends_hsts_and_secure_cookies(
        monkeypatch, stack_env, accounts, trusted, secure):
    # Issue 11 item 7. Untrusted, the same headers are anyone's to forge: no HSTS, no Secure cookie claimed.
    from clinicbot.web import create_app

    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRUSTED_PROXIES", trusted)
    client = SanicASGITestClient(create_app(name=f"proxied_{uuid.uuid4().hex[:8]}"))
    via_proxy = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    _, page = await client.get("/console/login", headers=via_proxy)
    username, password = accounts["clinician"]
    # The test client speaks plain http to the app (the proxy's side), so it would not send a Secure cookie back.
    login_cookie = next(h.split(";")[0] for h in page.headers.get_list("set-cookie")
                        if h.startswith(f"{SessionCodec.LOGIN_COOKIE}="))
    _, signed_in = await client.post(
        "/console/login", headers={**via_proxy, "Cookie": login_cookie}, follow_redirects=False,
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text), "next": "/console/conversations"})

    assert signed_in.status_code in (302, 303)
    assert ("Strict-Transport-Security" in page.headers) is secure
    session_cookie = [h for h in signed_in.headers.get_list("set-cookie") if h.startswith(f"{SessionCodec.COOKIE}=")]
    assert session_cookie and ("Secure" in session_cookie[0]) is secure
