"""The chat widget in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), on the page that
`make run` serves, against the whole stack (tests/conftest.py): phone-sized screen (375 px), no network but the
project's own servers. Screenshots go to results/screenshots/.

These tests fail (never skip) when Chromium is missing: `apt-get install chromium chromium-driver`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from clinicbot.settings import PROJECT_ROOT
from clinicbot.storage import ConsoleStore

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 375, "height": 740}
SCREENSHOTS = PROJECT_ROOT / "results" / "screenshots"
REPLY_TIMEOUT = 40_000  # ms; the first reply of a session includes the action server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """One patient's browser: a fresh profile at phone size that records every request and CSP complaint."""

    def __init__(self, browser: Browser, url: str) -> None:
        self.url = url
        self.context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        self.page: Page = self.context.new_page()
        self.hosts: List[str] = []
        self.console_errors: List[str] = []
        self.page.on("request", lambda request: self.hosts.append(urlsplit(request.url).netloc))
        self.page.on(
            "console", lambda message: message.type == "error" and self.console_errors.append(message.text)
        )
        self.page.goto(url)

    # --- what a patient does ---
    def open_chat(self) -> None:
        self.page.get_by_role("button", name="Chat with us").click()
        expect(self.input).to_be_focused()

    def say(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")

    def click_reply(self, title: str) -> None:
        self.page.get_by_role("group", name="Suggested replies").get_by_role("button", name=title).click()

    def expect_bot(self, text: str) -> None:
        expect(self.page.locator(".chatw-msg--bot").filter(has_text=text).last).to_be_visible(timeout=REPLY_TIMEOUT)

    @property
    def log(self):
        return self.page.get_by_role("log", name="Conversation")

    @property
    def input(self):
        return self.page.get_by_label("Type your message")

    def session_id(self) -> str:
        return self.page.evaluate(
            "() => { for (const k of Object.keys(localStorage)) if (k.startsWith('clinicbot-chat:'))"
            " return JSON.parse(localStorage.getItem(k)).sessionId; return null; }"
        )

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, stack) -> Iterator[Visit]:
    opened = Visit(browser, stack.web_url + "/")
    yield opened
    only_local = {urlsplit(stack.web_url).netloc, urlsplit(stack.rasa_url).netloc}
    try:
        assert set(opened.hosts) <= only_local, f"the page reached outside the project: {set(opened.hosts) - only_local}"
        assert not [e for e in opened.console_errors if "Content Security Policy" in e], opened.console_errors
    finally:
        opened.close()


def test_faq_answer_buttons_and_the_conversation_survives_a_reload(visit, stack_env):
    visit.open_chat()
    visit.expect_bot("it is not a diagnosis")  # the greeting, with the disclaimer
    expect(visit.page.locator("#chatw-disclaimer")).to_contain_text("It is not a diagnosis or medical advice")  # always on

    visit.say("why does my back hurt after sex")
    visit.expect_bot("Lower Back Pain After Sex")  # seed-002 answer names its source
    visit.expect_bot("Did that answer your question?")
    visit.screenshot("widget-faq-answer-375px")

    visit.click_reply("Yes, thanks")
    expect(visit.page.locator(".chatw-msg--user").last).to_have_text(re.compile(r"Yes, thanks$"))
    visit.expect_bot("Glad it helped")
    expect(visit.input).to_be_focused()  # focus is not lost when the buttons go away
    session_before = visit.session_id()

    visit.page.reload()
    expect(visit.log).to_contain_text("Lower Back Pain After Sex")
    expect(visit.log).to_contain_text("Glad it helped")
    assert visit.session_id() == session_before
    visit.say("thank you")
    visit.expect_bot("You're welcome")
    visit.screenshot("widget-after-reload-375px")

    # the server kept the same conversation: question, button and the message after the reload
    # the browser keeps the server's signed token "<conversation id>.<signature>"
    events = ConsoleStore(stack_env["DATABASE_URL"]).conversation_events(session_before.split(".")[0], ["user"])
    said = [e["data"].get("text") for e in events]
    assert said == ["/greet", "why does my back hurt after sex", "/feedback_helpful", "thank you"]


def test_booking_from_a_red_flag_is_stored(visit, stack_store):
    visit.open_chat()
    visit.expect_bot("What would you like to know?")
    visit.say("I get tingling in my left leg after sex")
    visit.expect_bot("should be checked by a clinician")
    visit.expect_bot("Would you like to book an appointment")
    visit.click_reply("Book in person")
    visit.expect_bot("What name should the clinic use for you?")
    visit.say("Dana Whitfield")
    visit.expect_bot("How can the clinic reach you?")
    visit.say("555-123-4567")
    visit.expect_bot("Which days and times usually suit you?")
    visit.say("weekday mornings")
    visit.expect_bot("May the clinic contact you")
    visit.click_reply("Yes")
    visit.expect_bot("Here's your request")
    visit.screenshot("widget-booking-read-back-375px")
    visit.click_reply("Yes, send it")
    visit.expect_bot("Your reference number is")
    visit.screenshot("widget-booking-reference-375px")

    confirmation = visit.page.locator(".chatw-msg--bot").filter(has_text="Your reference number is").last.inner_text()
    reference = re.search(r"reference number is (PH-[A-Z0-9]{6})", confirmation).group(1)
    rows = [row for row in stack_store.list_bookings() if row["reference"] == reference]
    assert len(rows) == 1, f"booking {reference} is not in the bookings table"
    row = rows[0]
    assert row["name"] == "Dana Whitfield"
    assert row["contact"].replace("-", "").endswith("5551234567")
    assert row["visit_type"] == "in_person"
    assert row["preferred_times"] == "weekday mornings"
    assert row["consent"] is True or row["consent"] == 1
    assert row["channel"] == "socketio"
    assert row["conversation_id"] == visit.session_id().split(".")[0]


def test_emergency_stands_out_and_the_widget_works_by_keyboard(visit):
    page = visit.page
    launcher = page.get_by_role("button", name="Chat with us")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(visit.input).to_be_focused()
    visit.expect_bot("What would you like to know?")

    page.keyboard.type("I can't feel anything between my legs and I can't pee")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert").filter(has_text="911")
    expect(alert).to_be_visible(timeout=REPLY_TIMEOUT)
    expect(alert).to_contain_text("Emergency")
    expect(alert.get_by_role("link", name="Call 911")).to_have_attribute("href", "tel:911")
    border = alert.evaluate("node => getComputedStyle(node).borderTopColor")
    assert border == "rgb(176, 0, 32)", "the emergency message is not outlined in red"
    expect(page.get_by_text("This may be an emergency. Call 911 now.")).to_be_visible()  # pinned above the log
    visit.screenshot("widget-emergency-375px")

    # phone width: nothing sticks out sideways
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

    page.keyboard.press("Escape")
    expect(page.get_by_role("log", name="Conversation")).to_be_hidden()
    expect(page.get_by_role("button", name="Chat with us")).to_be_focused()


def test_messages_are_shown_as_text_never_as_html(visit):
    visit.open_chat()
    visit.expect_bot("What would you like to know?")
    visit.say('<img src=x onerror="window.__injected=1"><b>bold?</b>')

    expect(visit.page.locator(".chatw-msg--user").last).to_contain_text('<img src=x onerror="window.__injected=1">')
    assert visit.page.locator(".chatw-log img, .chatw-log b").count() == 0
    assert visit.page.evaluate("() => window.__injected") is None


def test_page_says_in_its_csp_that_everything_is_local(stack):
    response = httpx.get(stack.web_url + "/", timeout=10)
    csp = response.headers["Content-Security-Policy"]
    rasa = urlsplit(stack.rasa_url).netloc

    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert f"connect-src 'self' http://{rasa} ws://{rasa}" in csp
    assert f'data-rasa-url="http://{rasa}"' in response.text
    assert "https://" not in response.text  # no CDN, no web fonts
