"""`python -m clinicbot.console.users`: accounts with scrypt hashes and per-user salts; the password never
comes from the command line."""
from __future__ import annotations

import os
import subprocess
import sys

from clinicbot.console.auth import verify_password
from clinicbot.settings import PROJECT_ROOT
from clinicbot.storage import ConsoleStore


def users(database_url: str, *args: str, stdin: str = ""):
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "clinicbot.console.users", *args],
        input=stdin, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_add_list_change_and_remove_accounts(tmp_path):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    password = "a long enough password"
    assert users(url, "add", "Alice", "--role", "clinician", stdin=password + "\n").returncode == 0
    assert users(url, "add", "bob", stdin=password + "\n").returncode == 0

    store = ConsoleStore(url)
    alice, bob = store.get_staff_user("alice"), store.get_staff_user("bob")  # names are case-insensitive
    assert (alice["role"], bob["role"]) == ("clinician", "front_desk")  # the least access by default
    assert alice["password_hash"].startswith("scrypt$")
    assert password not in alice["password_hash"]
    salt = lambda user: user["password_hash"].split("$")[4]
    assert salt(alice) != salt(bob) and alice["password_hash"] != bob["password_hash"]  # same password, own salt
    assert verify_password(password, alice["password_hash"]) and not verify_password("wrong", alice["password_hash"])

    listed = users(url, "list")
    assert listed.stdout.split() == ["alice", "clinician", "bob", "front_desk"]
    duplicate = users(url, "add", "alice", stdin=password + "\n")
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    short = users(url, "add", "carol", stdin="short\n")
    assert short.returncode != 0 and store.get_staff_user("carol") is None

    assert users(url, "set-password", "bob", stdin="another long password\n").returncode == 0
    assert verify_password("another long password", store.get_staff_user("bob")["password_hash"])
    assert users(url, "set-role", "bob", "clinician").returncode == 0
    assert store.get_staff_user("bob")["role"] == "clinician"
    assert users(url, "remove", "bob").returncode == 0
    assert store.get_staff_user("bob") is None
    assert users(url, "add", "dave", "--role", "admin", stdin=password + "\n").returncode == 0
    assert store.get_staff_user("dave")["role"] == "admin"
    assert users(url, "add", "erin", "--role", "staff", stdin=password + "\n").returncode != 0  # the old role is gone
