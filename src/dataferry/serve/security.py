"""Who may write, and the CSRF check of the page's forms.

The only writes are pause and resume. They need the token from ``DATAFERRY_SERVE_TOKEN``: without
that variable the server is read-only and a write gets 403; with it, a request without the right
token gets 401. Forms send the token in a password field; API clients send
``Authorization: Bearer <token>``.

CSRF: every page sets a random cookie (``SameSite=Strict``, ``HttpOnly``) and puts the same value
in a hidden field of each form (the double-submit pattern). A form post whose field does not
match its cookie is refused with 403 before the token is even looked at, so another site cannot
make an operator's browser post a form. API requests with a bearer header need no cookie: a browser
never adds that header to a cross-site request by itself.
"""

from __future__ import annotations

import hmac
import os
import secrets

TOKEN_ENV = "DATAFERRY_SERVE_TOKEN"
CSRF_COOKIE = "dataferry_csrf"
CSRF_FIELD = "csrf"


class Denied(Exception):
    """A write was refused: ``status`` is 401 or 403, ``message`` says why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def server_token() -> str | None:
    """The write token, or None: the server is read-only."""
    return os.environ.get(TOKEN_ENV) or None


def check_token(given: str | None) -> None:
    """Raise ``Denied`` unless writes are enabled and ``given`` is the token."""
    expected = server_token()
    if expected is None:
        raise Denied(
            403, f"this server is read-only: start it with {TOKEN_ENV} set to allow pause and resume"
        )
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Denied(401, "a valid token is needed to pause or resume: give the server's token")


def new_csrf() -> str:
    """A fresh random CSRF value."""
    return secrets.token_urlsafe(24)


def check_csrf(cookie: str | None, field: str | None) -> None:
    """Raise ``Denied`` (403) unless the form's field matches its cookie."""
    if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise Denied(403, "the form's CSRF check failed: reload the page and submit it again")


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header."""
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None
