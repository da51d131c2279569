"""The staff console in headless Chromium, against the running stack (`make run` on test ports):
a real patient conversation with a red flag and a booking, then sign in, filter "red flags", open the
transcript, and mark the booking "contacted". Screenshots go to results/screenshots/."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from clinicbot.console.auth import hash_password
from clinicbot.settings import PROJECT_ROOT
from clinicbot.storage import ConsoleStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "results" / "screenshots"
RED_FLAG = "I get tingling in my left leg after sex"


def book_with_red_flag(chat) -> None:
    assert "book" in " ".join(chat.texts(RED_FLAG)).lower()
    chat.say("/book_appointment")
    chat.say("Robin Example")
    chat.say("555-123-4567")
    chat.say('/inform{"visit_type": "in_person"}')
    chat.say("weekday mornings")
    chat.say("/affirm")
    assert "PH-" in " ".join(chat.texts("/affirm"))


@pytest.mark.browser
def test_sign_in_filter_red_flags_read_transcript_and_mark_booking_contacted(stack, stack_env, chat):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
    from playwright.sync_api import expect, sync_playwright

    book_with_red_flag(chat)
    store = ConsoleStore(stack_env["DATABASE_URL"])
    booking = next(b for b in store.list_bookings() if b["conversation_id"] == chat.conversation_id)
    username, password = f"browser-{uuid.uuid4().hex[:6]}", "browser test password"
    store.create_staff_user(username, hash_password(password), "clinician")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Nothing without signing in: the console sends us to the sign-in page.
            page.goto(f"{stack.web_url}/console/conversations")
            expect(page).to_have_url(f"{stack.web_url}/console/login?next=%2Fconsole%2Fconversations")
            page.fill("#username", username)
            page.fill("#password", password)
            page.click("button:has-text('Sign in')")
            expect(page).to_have_url(f"{stack.web_url}/console/conversations")

            # Filter: red flags.
            page.click("nav.quick >> text=Red flags")
            expect(page).to_have_url(f"{stack.web_url}/console/conversations?red_flag=1")
            row = page.locator(f'tr[data-conversation="{chat.conversation_id}"]')
            expect(row).to_be_visible()
            expect(row.locator(".badge.level-booking")).to_have_text("BOOKING")
            expect(row.locator(".badge.booking")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "console-1-red-flags.png"), full_page=True)

            # Transcript.
            row.locator("a.open").click()
            expect(page.locator(".turn.user .text").first).to_have_text(RED_FLAG)
            expect(page.locator(".turn.user .nlu").first).to_contain_text("red_flag_booking")
            expect(page.locator(".turn.user mark").first).to_contain_text("tingling")
            page.screenshot(path=str(SCREENSHOTS / "console-2-transcript.png"), full_page=True)

            # Queue: mark the booking "contacted".
            page.click("header nav >> text=Queue")
            item = page.locator(f'li[data-item="booking-{booking["id"]}"]')
            expect(item).to_contain_text(booking["reference"])
            item.locator("select[name=status]").select_option("contacted")
            item.locator("button:has-text('Save')").click()
            item = page.locator(f'li[data-item="booking-{booking["id"]}"]')
            expect(item.locator(".status")).to_have_text("contacted")
            expect(item.locator(".changed")).to_contain_text(f"contacted by {username}")
            item.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "console-3-queue.png"))
        finally:
            browser.close()

    stored = ConsoleStore(stack_env["DATABASE_URL"]).queue_item("booking", booking["id"])
    assert stored["status"] == "contacted" and stored["history"][-1]["changed_by"] == username
