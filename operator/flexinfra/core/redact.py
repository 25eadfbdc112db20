"""Keep credentials out of everything the operator writes: Events, status, logs.

Two nets, because either alone leaks:

* **by shape**: ``password: x``, ``"password": "my secret pass"``, ``adminPass=x``,
  ``passwd``, ``token``, ``Authorization: Bearer x``, ``X-Auth-Token: x``, ``user:pw@`` in a
  URL. A cloud or library message that echoes a request body is caught here even when the
  value is not one the operator knows (a server's ``adminPass`` made by Nova).
* **by value**: every secret the operator has read (the password, application credential
  secret or token of each clouds.yaml entry) is remembered when it is parsed, and any
  occurrence of it is replaced, whatever surrounds it: a traceback line, a repr of a dict, a
  URL. This is what makes a canary password provably absent from every output.

Stdlib only (``core``): the cloud layer, the handlers and the logging set-up all use it.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
#: the longest message kept (Events and conditions are read by people; the rest is in logs)
MAX_LENGTH = 400

_KEY = (r"[\w.-]*?(?:pass(?:wd|word|phrase)?|secret|token|credential|api[_-]?key"
        r"|private[_-]?key)[\w.-]*")
_VALUE = (
    r"(?:(?:bearer|basic|token)\s+)?"  # Authorization: Bearer <x>
    r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;}&\]\)]+)"
)
#: key (optionally quoted) then ``:`` or ``=`` then a value (quoted, with spaces, or a word)
_KEY_VALUE = re.compile(rf"(?P<q>[\"']?)(?P<key>{_KEY})(?P=q)(?P<sep>\s*[:=]\s*)(?P<val>{_VALUE})",
                        re.I)
_AUTH_HEADER = re.compile(r"(?P<key>authorization|x-auth-token|x-subject-token)(?P<q>[\"']?)"
                          r"(?P<sep>\s*[:=]\s*)(?P<val>" + _VALUE + ")", re.I)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I)
#: values shorter than this are not remembered (a 2-letter "password" would mask every word)
_MIN_SECRET = 4


def _mask_value(match: re.Match) -> str:
    val = match.group("val")
    quote = val[0] if val[:1] in ("'", '"') else ""
    return f"{match.group(0)[: match.start('val') - match.start(0)]}{quote}{MASK}{quote}"


class Redactor:
    """The process-wide set of known secret values, and the scrubbing of text."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def remember(self, *values: object) -> None:
        """Secrets to replace wherever they appear (clouds.yaml auth values, on parse)."""
        with self._lock:
            before = len(self._known)
            for value in values:
                if isinstance(value, str) and len(value) >= _MIN_SECRET:
                    self._known.add(value)
            if len(self._known) != before:
                # longest first: a secret that contains another is replaced whole
                alts = sorted(self._known, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, alts)))

    def forget_all(self) -> None:
        with self._lock:
            self._known.clear()
            self._pattern = None

    def scrub(self, text: object, limit: int | None = MAX_LENGTH) -> str:
        """``text`` with credentials masked; cut to ``limit`` characters (None: whole)."""
        out = str(text)
        pattern = self._pattern
        if pattern is not None:
            out = pattern.sub(MASK, out)
        out = _AUTH_HEADER.sub(_mask_value, out)
        out = _KEY_VALUE.sub(_mask_value, out)
        out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
        out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", out)
        if limit is not None and len(out) > limit:
            out = out[: limit - 3] + "..."
        return out


#: the one redactor of the process
REDACTOR = Redactor()


def scrub(text: object, limit: int | None = MAX_LENGTH) -> str:
    return REDACTOR.scrub(text, limit)


class ScrubbingFormatter(logging.Formatter):
    """Formats a record as usual (traceback included), then scrubs the whole text: a library's
    exception message, a dict in a debug line, a traceback's source lines."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), limit=None)


class EventFormatter(logging.Formatter):
    """For kopf's Event poster: the scrubbed message and, for a failure, the exception's type
    and scrubbed message; never a traceback (an Event is read by users; the log line has it,
    scrubbed)."""

    def format(self, record: logging.LogRecord) -> str:
        message = scrub(record.getMessage(), limit=None)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {scrub(exc, limit=None)})"
        return scrub(message)
