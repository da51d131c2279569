"""Input limits on the running stack (issue 11): a capped request body on every server, and a message longer
than the bot reads gets a kind reply, unless its first part holds a red flag, whose advice comes first."""
from __future__ import annotations

import httpx

from clinicbot.settings import load_settings
from clinicbot.storage import ConsoleStore

LIMITS = load_settings({})


def test_a_body_over_the_cap_is_refused_by_the_public_servers_and_they_go_on(stack, chat):
    body = {"sender": chat.sender, "message": "a" * (LIMITS.request_max_bytes + 1)}

    rest = httpx.post(chat.url, json=body, timeout=30)
    web = httpx.post(f"{stack.web_url}/console/login", content=b"x" * (LIMITS.request_max_bytes + 1), timeout=30)

    assert (rest.status_code, web.status_code) == (413, 413)
    assert any("not a diagnosis" in text for text in chat.texts("hello"))


def test_a_very_long_message_gets_a_kind_reply_and_is_kept_whole(chat, stack_env):
    story = "I have been having a hard time with my pelvic floor and I want to explain everything. " * 40
    assert len(story) > LIMITS.message_max_chars

    texts = chat.texts(story)

    assert any("longer than I can read in one go" in text for text in texts)
    [stored] = ConsoleStore(stack_env["DATABASE_URL"]).conversation_events(chat.conversation_id, ["user"])
    assert stored["data"]["text"] == story.strip()  # staff see all of it (Rasa trims the ends)


def test_a_red_flag_in_the_part_that_is_read_gets_the_emergency_advice_first(chat):
    story = "My back is killing me and I can't feel anything when I wipe, it's numb down there. " + "And more. " * 300

    texts = chat.texts(story)

    assert "911" in texts[0]
    assert not any("longer than I can read" in text for text in texts)
