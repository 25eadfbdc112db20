"""Item 8: credentials never reach an Event, the status or a log line, whatever the path.

A canary password is put in a clouds.yaml and then sent through each failure path the
handlers have: a cloud error quoting it, a library exception (not ours) carrying it in its
message and traceback, a teardown failure; the Events, the status and the log must not hold
it."""

from __future__ import annotations

import logging

import kopf
import pytest

from flexinfra.cloud.connection import parse_cloud
from flexinfra.cloud.errors import TransientError, scrub
from flexinfra.core import redact
from flexinfra.core.redact import EventFormatter, ScrubbingFormatter
from flexinfra.handlers import website as handler
from tests.unit.test_handlers import TEMPLATES, body

CANARY = "Canary-pw 7f3e"


@pytest.mark.parametrize(("text", "leaked"), [
    ('{"password": "my secret pass"}', "secret pass"),
    ('{"adminPass": "Zx9 qq"}', "Zx9"),
    ("adminPass=abc123", "abc123"),
    ("Authorization: Bearer abc.def.ghi", "abc.def"),
    ("headers {'X-Auth-Token': 'gAAAAABtoken'}", "gAAAA"),
    ("passwd: hunter22", "hunter22"),
    ("application_credential_secret: s3cr3t", "s3cr3t"),
    ("https://admin:s3cr3t@keystone:5000/v3", "s3cr3t"),
    ("password='a b c' then", "a b c"),
])
def test_scrub_masks_each_shape(text, leaked):
    out = scrub(text)
    assert leaked not in out and "***" in out


def test_scrub_leaves_ordinary_messages_alone():
    text = "create pool fi-a-pool-80: conflict, object busy (409); will retry"
    assert scrub(text) == text


def test_a_parsed_secret_is_masked_wherever_it_appears():
    parse_cloud(f"""
clouds:
  demo:
    auth: {{auth_url: http://127.0.0.1:5000/v3, username: u, password: "{CANARY}",
           project_name: p}}
""", "demo")
    assert CANARY not in redact.scrub(f"KeyError: ({CANARY!r},) in frame", limit=None)
    assert CANARY not in scrub(f"...{CANARY}...")


def _remember():
    redact.REDACTOR.remember(CANARY)


@pytest.fixture
def seen(monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message:
                        events.append(f"{type} {reason} {message}"))
    monkeypatch.setattr(handler, "gateway_for", lambda ns, cloud: object())
    _remember()
    return events


def _everything(events, patch, caplog) -> str:
    return "\n".join([*events, str(dict(patch)), caplog.text])


class LibraryError(Exception):
    """Not the operator's own: what an SDK or a bug raises."""


@pytest.mark.parametrize("error", [
    TransientError(f"network: cloud error 500 (password: {CANARY}); will retry"),
    LibraryError(f"request failed: {{'auth': {{'password': '{CANARY}'}}}}"),
    KeyError(CANARY),
])
def test_canary_never_reaches_events_status_or_logs(seen, monkeypatch, caplog, error):
    def explode(*_, **__):
        raise error

    monkeypatch.setattr(handler, "reconcile_website", explode)
    patch = kopf.Patch()
    with caplog.at_level(logging.INFO), pytest.raises(kopf.TemporaryError) as err:
        handler.run(body(), patch, TEMPLATES, from_timer=False)
    text = _everything(seen, patch, caplog) + str(err.value)
    assert CANARY not in text
    ready = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TransientError"


def test_canary_never_reaches_the_teardown_message(seen, monkeypatch, caplog):
    def explode(owner, gateway):
        raise LibraryError(f"DELETE failed: Authorization: Bearer {CANARY}")

    monkeypatch.setattr(handler.RUNNER, "delete", handler.RUNNER.delete)
    monkeypatch.setattr("flexinfra.handlers.runner.check_binding", lambda body, gw: None)
    monkeypatch.setattr("flexinfra.handlers.runner.gateway_for", lambda ns, cloud: object())
    patch = kopf.Patch()
    with caplog.at_level(logging.INFO), pytest.raises(kopf.TemporaryError) as err:
        handler.RUNNER.delete(body(), patch, explode)
    assert CANARY not in _everything(seen, patch, caplog) + str(err.value)


def test_log_lines_and_kopf_events_are_scrubbed_tracebacks_included():
    _remember()
    try:
        raise LibraryError(f"boom {CANARY}")
    except LibraryError:
        record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1,
                                   "Handler %r failed: %s", ("website_changed", CANARY),
                                   exc_info=__import__("sys").exc_info())
    line = ScrubbingFormatter().format(record)
    assert "Traceback" in line and CANARY not in line
    event = EventFormatter().format(record)
    assert "Traceback" not in event and CANARY not in event and "LibraryError" in event
