"""Staff accounts for the console.

    python -m clinicbot.console.users add NAME [--role front_desk|clinician|admin]
    python -m clinicbot.console.users set-password NAME
    python -m clinicbot.console.users set-role NAME front_desk|clinician|admin
    python -m clinicbot.console.users remove NAME
    python -m clinicbot.console.users list

The password is asked twice at a terminal, or read from the first line of stdin when piped
(`printf '%s\n' "$PASSWORD" | python -m clinicbot.console.users add alice`); never from arguments,
which other users of the machine can see. Changing a password or removing an account ends that
person's console sessions at once.
"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import List, Optional

from clinicbot.console.auth import ROLES, hash_password, normalise_username, password_problem
from clinicbot.settings import load_settings
from clinicbot.storage import ConsoleStore


def _store() -> ConsoleStore:
    settings = load_settings()
    return ConsoleStore(settings.database_url, settings.tracker_store_url)


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("The passwords differ.")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    problem = password_problem(password)
    if problem:
        raise SystemExit(f"Not accepted: {problem}.")
    return password


def _name(raw: str) -> str:
    name = normalise_username(raw)
    if not name or len(name) > 100 or any(ch.isspace() for ch in name):
        raise SystemExit("A user name is 1-100 characters without spaces.")
    return name


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinicbot.console.users", description="Staff console accounts")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create an account (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="front_desk",
                     help="front_desk: the queue; clinician: conversations and exports; admin: the audit trail")
    password = commands.add_parser("set-password", help="replace a password (ends the user's sessions)")
    password.add_argument("name")
    role = commands.add_parser("set-role", help="change a role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    remove = commands.add_parser("remove", help="delete an account (ends the user's sessions)")
    remove.add_argument("name")
    commands.add_parser("list", help="list accounts")
    args = parser.parse_args(argv)

    store = _store()
    if args.command == "list":
        for user in store.list_staff_users():
            print(f"{user['username']}\t{user['role']}")
        return 0
    name = _name(args.name)
    if args.command == "add":
        if store.get_staff_user(name) is not None:
            raise SystemExit(f"User {name!r} already exists (use set-password).")
        store.create_staff_user(name, hash_password(read_password()), args.role)
        print(f"Created {name} ({args.role}).")
    elif args.command == "set-password":
        if store.get_staff_user(name) is None:
            raise SystemExit(f"No user {name!r}.")
        store.set_staff_password(name, hash_password(read_password()))
        print(f"Password changed for {name}.")
    elif args.command == "set-role":
        if not store.set_staff_role(name, args.role):
            raise SystemExit(f"No user {name!r}.")
        print(f"{name} is now {args.role}.")
    elif args.command == "remove":
        if not store.delete_staff_user(name):
            raise SystemExit(f"No user {name!r}.")
        print(f"Removed {name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
