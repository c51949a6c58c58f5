"""Text messages (SMS), through a pluggable backend chosen by the `SMS_BACKEND` setting.

A backend is any class whose instances have `send(phone: str, text: str) -> None`: it
delivers one message to one number (international form, e.g. +996700123456) or raises an
exception (`OSError` for a transient failure the caller may retry). To add a gateway, write
such a class (e.g. `myproject.sms.NikitaSmsBackend` calling the gateway's HTTP API), and
set `SMS_BACKEND=myproject.sms.NikitaSmsBackend` in the environment. The default,
`ConsoleSmsBackend`, only writes the message to the log, so a laptop sends nothing.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class SmsBackend(Protocol):
    def send(self, phone: str, text: str) -> None: ...


class ConsoleSmsBackend:
    """Writes each message to the log (and standard output), like Django's console mail."""

    def send(self, phone: str, text: str) -> None:
        logger.info("SMS to %s: %s", phone, text)
        print(f"SMS to {phone}: {text}")  # noqa: T201 - the console backend's whole purpose


class LocmemSmsBackend:
    """Keeps messages in `outbox` (a list of (phone, text)), for tests, like locmem mail."""

    outbox: list[tuple[str, str]] = []

    def send(self, phone: str, text: str) -> None:
        LocmemSmsBackend.outbox.append((phone, text))


def get_sms_backend() -> SmsBackend:
    return import_string(settings.SMS_BACKEND)()


def send_sms(*, phone: str, text: str) -> None:
    if phone.strip():
        get_sms_backend().send(phone.strip(), text)
