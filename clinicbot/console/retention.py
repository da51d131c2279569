"""Delete conversations whose last activity is older than N days (default: RETENTION_DAYS, 365).

    python -m clinicbot.console.retention [--days N] [--dry-run]

A conversation (one sender id) goes as a whole: all its events in Rasa's tracker store, and its
bookings, red-flag records, handoffs, feedback and their status changes. A conversation with any
activity inside the window is kept whole. Run it daily (cron / a systemd timer); it is idempotent.
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import List, Optional

from clinicbot.settings import load_settings
from clinicbot.storage import ConsoleStore, utcnow


def main(argv: Optional[List[str]] = None) -> int:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m clinicbot.console.retention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=settings.retention_days,
                        help=f"keep conversations active in the last N days (default {settings.retention_days})")
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    cutoff = utcnow() - timedelta(days=args.days)
    store = ConsoleStore(settings.database_url, settings.tracker_store_url)
    counts = store.delete_conversations_inactive_since(cutoff, dry_run=args.dry_run)
    verb = "Would delete" if args.dry_run else "Deleted"
    details = ", ".join(f"{table} {count}" for table, count in counts.items() if table != "conversations")
    print(f"{verb} {counts['conversations']} conversation(s) last active before {cutoff:%Y-%m-%d %H:%M} UTC ({details}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
