"""Staff sign-in: password hashing, signed session cookies, CSRF tokens and a sign-in rate limit.

- Passwords: scrypt (hashlib, memory-hard) with a random 16-byte salt per user; parameters are stored
  with the hash so they can be raised later without invalidating existing accounts.
- Sessions: a cookie signed with CONSOLE_SECRET (itsdangerous) that holds the user name, a CSRF token
  and a fingerprint of the password hash; it expires CONSOLE_SESSION_MINUTES after sign-in. Changing
  a password or deleting the account ends every session at once (checked on each request).
- Rate limit: failed sign-ins are counted per user name and per client address in a sliding window.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Optional

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

# docs/console.md, "Roles": front desk calls patients back from the queue; clinicians read conversations and
# export; admins read the audit trail and manage accounts (the users CLI), and see no patient data.
ROLES = ("front_desk", "clinician", "admin")
# Before roles were split, everyone but clinicians was "staff"; migration 0002 renames them, and an account in a
# database it has not run on is read the same way.
LEGACY_ROLES = {"staff": "front_desk"}


def role_of(user: Dict[str, Any]) -> str:
    """A staff account's role, with the old "staff" read as front_desk."""
    return LEGACY_ROLES.get(user["role"], user["role"])
MIN_PASSWORD_LENGTH = 10
# Hashing a 90 MB "password" took half a gigabyte; no pass phrase needs more than this.
MAX_PASSWORD_LENGTH = 256

# scrypt cost: n=2^15, r=8, p=1 uses 32 MiB and ~0.1 s per check here (OWASP's minimum is n=2^17 with
# r=8 and p=1, or an equivalent; n=2^15 keeps sign-in responsive on a 2-core clinic server).
SCRYPT_N = 2 ** 15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * r * (n + p + 2), dklen=KEY_BYTES
    )


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$key`, salt and key base64."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


# Compared against when the user name does not exist, so that an unknown name takes as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: Optional[str]) -> bool:
    """Slow on purpose (scrypt, ~0.1 s): call it off the event loop (the console uses an executor)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    if not stored:
        stored, known = _DUMMY_HASH, False
    else:
        known = True
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected) and known


def password_problem(password: str) -> Optional[str]:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password may have at most {MAX_PASSWORD_LENGTH} characters"
    if password.strip() != password:
        return "the password must not start or end with spaces"
    return None


def normalise_username(username: str) -> str:
    return (username or "").strip().lower()


def password_fingerprint(password_hash: str) -> str:
    """Changes whenever the password changes; lets a password reset end existing sessions."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str
    fingerprint: str

    @property
    def key(self) -> str:
        """What the database keeps of an ended session: a digest of its random token, not the token."""
        return hashlib.sha256(self.csrf.encode("utf-8")).hexdigest()


class SessionCodec:
    """Signed, time-limited session cookies (the cookie holds no patient data)."""

    COOKIE = "console_session"
    LOGIN_COOKIE = "console_login"  # CSRF token for the sign-in form itself, before there is a session

    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self.max_age = max_age_seconds
        self._sessions = URLSafeTimedSerializer(secret, salt="clinicbot.console.session")
        self._login = URLSafeTimedSerializer(secret, salt="clinicbot.console.login")

    def issue(self, username: str, fingerprint: str) -> str:
        return self._sessions.dumps({"u": username, "c": secrets.token_urlsafe(32), "f": fingerprint})

    def read(self, cookie: Optional[str]) -> Optional[Session]:
        if not cookie:
            return None
        try:
            data: Dict[str, Any] = self._sessions.loads(cookie, max_age=self.max_age)
        except (BadSignature, SignatureExpired):
            return None
        try:
            return Session(username=str(data["u"]), csrf=str(data["c"]), fingerprint=str(data["f"]))
        except (KeyError, TypeError):
            return None

    def issue_login_token(self) -> str:
        return self._login.dumps(secrets.token_urlsafe(32))

    def read_login_token(self, cookie: Optional[str]) -> Optional[str]:
        if not cookie:
            return None
        try:
            return str(self._login.loads(cookie, max_age=3600))
        except (BadSignature, SignatureExpired):
            return None


def tokens_match(expected: Optional[str], given: Optional[str]) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


class RateLimiter:
    """At most `limit` failures per key in the last `window` seconds (in memory, one process)."""

    def __init__(self, limit: int, window_seconds: float, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window_seconds
        self._clock = clock
        self._failures: Dict[str, Deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> Deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, self._clock())) >= self.limit

    def retry_after(self, key: str) -> int:
        with self._lock:
            failures = self._recent(key, self._clock())
            if len(failures) < self.limit:
                return 0
            return max(1, int(failures[0] + self.window - self._clock()) + 1)

    def fail(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 10000:  # forget expired keys so memory stays bounded
                for stale in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window]:
                    del self._failures[stale]

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
