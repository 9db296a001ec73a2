"""Alerts and pings against real loopback receivers (http.server, a small SMTP server):
bodies, retries, dead receivers, redaction."""

from __future__ import annotations

import logging
import time

import pytest

from drctl import config
from drctl.net import free_port
from drctl.notify.events import MAX_UIDS, Alert, redact
from drctl.notify.notifier import Notifier
from tests.support.scheduler import receiver, smtp_server, wait_for

SECRET = "s3cr3t-t0ken-value"


def notify_settings(**raw):
    return config.from_mapping({"notify": {"timeout": "2s", "retries": 2, **raw}}).notify


def alert(**kw) -> Alert:
    base = {
        "kind": "run_failed",
        "site": "main",
        "summary": "check of repository offsite failed",
        "reason": "repository offsite: restic failed",
        "agent": "pacs1",
        "job": "check:offsite",
        "repository": "offsite",
        "run_id": 7,
    }
    return Alert(**{**base, **kw})


@pytest.fixture
def hook(monkeypatch):
    with receiver() as rec:
        monkeypatch.setenv("DRCTL_TEST_HOOK", f"{rec.url}/hook?token={SECRET}")
        yield rec


def test_webhook_posts_one_json_document_without_secrets(hook):
    notifier = Notifier(notify_settings(webhook="env:DRCTL_TEST_HOOK"), site="main", mask=[SECRET])
    notifier.alert(alert(reason=f"cannot reach s3:https://key:{SECRET}@objects/bucket"))
    notifier.close(5)
    [posted] = hook.requests
    assert posted.method == "POST" and posted.headers["Content-Type"] == "application/json"
    body = posted.json()
    assert body["kind"] == "run_failed" and body["severity"] == "critical"
    assert body["site"] == "main" and body["job"] == "check:offsite" and body["run_id"] == 7
    assert "cannot reach" in body["reason"]
    assert SECRET not in posted.body.decode()


def test_webhook_retries_a_failing_receiver_then_delivers(hook):
    hook.statuses[:] = [500, 503]
    notifier = Notifier(notify_settings(webhook="env:DRCTL_TEST_HOOK"), site="main")
    notifier.alert(alert())
    wait_for(lambda: len(hook.requests) == 3, 10, what="third attempt")
    notifier.close(2)
    assert [r.method for r in hook.requests] == ["POST"] * 3


def test_a_permanent_refusal_is_not_retried(hook):
    hook.statuses[:] = [404]
    results = []
    notifier = Notifier(
        notify_settings(webhook="env:DRCTL_TEST_HOOK"),
        site="main",
        on_result=lambda channel, ok: results.append((channel, ok)),
    )
    notifier.alert(alert())
    wait_for(lambda: results, 5, what="the delivery result")
    notifier.close(2)
    assert len(hook.requests) == 1 and results == [("webhook", False)]


def test_a_dead_receiver_is_logged_and_never_raises(monkeypatch, caplog):
    monkeypatch.setenv("DRCTL_TEST_HOOK", f"http://127.0.0.1:{free_port()}/hook?token={SECRET}")
    notifier = Notifier(notify_settings(webhook="env:DRCTL_TEST_HOOK", retries=0), site="main")
    with caplog.at_level(logging.INFO, logger="drctl.notify"):
        started = time.monotonic()
        notifier.alert(alert())  # returns at once: delivery is asynchronous
        assert time.monotonic() - started < 0.5
        wait_for(lambda: "given up" in caplog.text, 10, what="the failure log")
        notifier.close(2)
    assert "webhook run_failed (env:DRCTL_TEST_HOOK) failed" in caplog.text
    assert SECRET not in caplog.text and "127.0.0.1" not in caplog.text.split("cannot")[0]


def test_email_through_smtp_with_login(monkeypatch):
    monkeypatch.setenv("DRCTL_TEST_SMTP_PASS", "smtp-pass-123")
    with smtp_server() as smtp:
        settings = notify_settings(
            email={
                "smtp": smtp.address,
                "from": "drctl@example.org",
                "to": ["pacs-admins@example.org"],
                "username": "drctl",
                "password": "env:DRCTL_TEST_SMTP_PASS",
                "starttls": False,
            }
        )
        notifier = Notifier(settings, site="main", mask=["smtp-pass-123"])
        notifier.alert(
            alert(
                kind="vanished_studies",
                summary="2 studies vanished from pacs1",
                study_uids=("1.2.3.4", "1.2.3.5"),
            )
        )
        wait_for(lambda: smtp.messages, 10, what="the email")
        notifier.close(2)
    [message] = smtp.messages
    assert smtp.auth == [("drctl", "smtp-pass-123")]
    assert "pacs-admins@example.org" in message["to"][0]
    data = message["data"]
    assert "Subject: [drctl warning] main: 2 studies vanished from pacs1" in data
    assert "1.2.3.4" in data and "1.2.3.5" in data and "smtp-pass-123" not in data


def test_starttls_required_but_not_offered_fails_cleanly(caplog):
    with smtp_server(with_auth=False) as smtp:
        settings = notify_settings(
            email={"smtp": smtp.address, "from": "d@x.org", "to": ["a@x.org"], "starttls": True}
        )
        results = []
        notifier = Notifier(
            settings, site="main", on_result=lambda channel, ok: results.append((channel, ok))
        )
        with caplog.at_level(logging.INFO, logger="drctl.notify"):
            notifier.alert(alert())
            wait_for(lambda: results, 10, what="the delivery result")
            notifier.close(2)
    assert results == [("email", False)] and smtp.messages == []
    assert "does not offer STARTTLS" in caplog.text


def test_pings_start_success_and_fail_with_reason():
    with receiver() as rec:
        notifier = Notifier(notify_settings(pings={"backup": f"{rec.url}/ping/abc"}), site="m")
        notifier.ping("backup", "start")
        notifier.ping("backup", "success")
        notifier.ping("backup", "fail", reason=f"restic failed at s3:https://u:{SECRET}@h/b")
        notifier.ping("check", "start")  # no monitor configured for check
        wait_for(lambda: len(rec.requests) == 3, 10, what="three pings")
        notifier.close(2)
    assert [(r.method, r.path) for r in rec.requests] == [
        ("GET", "/ping/abc/start"),
        ("GET", "/ping/abc"),
        ("POST", "/ping/abc/fail"),
    ]
    assert b"restic failed" in rec.requests[2].body and SECRET.encode() not in rec.requests[2].body


def test_redaction_and_long_uid_lists():
    assert redact("see https://user:pw@host/x?token=abc&a=1", []) == (
        "see https://***@host/x?token=***&a=1"
    )
    assert redact("password is hunter22", ["hunter22"]) == "password is ***"
    many = tuple(f"1.2.{i}" for i in range(MAX_UIDS + 5))
    body = alert(kind="vanished_studies", study_uids=many).to_json()
    assert len(body["study_uids"]) == MAX_UIDS and body["study_uids_total"] == MAX_UIDS + 5
    assert "and 5 more" in alert(kind="vanished_studies", study_uids=many).text()
