"""TOTP two-factor authentication (django-otp): enrolment, log-in codes, removal."""

from __future__ import annotations

import io
from base64 import b32encode

import qrcode
import qrcode.image.svg
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEvent, User
from accounts.services.audit import record_event


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def has_two_factor(user: User) -> bool:
    return confirmed_device(user) is not None


@transaction.atomic
def start_totp_enrolment(*, user: User) -> TOTPDevice:
    """A fresh, unconfirmed device whose secret the user scans into an authenticator app."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)


def pending_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).first()


@transaction.atomic
def confirm_totp_enrolment(*, user: User, token: str) -> TOTPDevice:
    """Turn two-factor on once the user proves their app produces the right codes."""
    device = pending_device(user)
    if device is None:
        raise ValidationError(_("Start the set-up again: no authenticator is waiting."))
    if not device.verify_token(token.strip()):
        raise ValidationError(_("That code is not right. Check the time on your phone."))
    TOTPDevice.objects.filter(user=user, confirmed=True).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    record_event(actor=user, action=AuditEvent.Action.TWO_FACTOR, target=user, detail={"on": True})
    return device


@transaction.atomic
def disable_two_factor(*, user: User, password: str) -> None:
    if not user.check_password(password):
        raise ValidationError(_("The password is not right."))
    TOTPDevice.objects.filter(user=user).delete()
    record_event(actor=user, action=AuditEvent.Action.TWO_FACTOR, target=user, detail={"on": False})


def verify_login_code(*, user: User, token: str) -> TOTPDevice | None:
    """The user's confirmed device if `token` is a valid current code (django-otp throttles)."""
    device = confirmed_device(user)
    if device is None or not device.verify_token(token.strip()):
        return None
    return device


def manual_entry_key(device: TOTPDevice) -> str:
    """The secret as authenticator apps accept it when typed in (base32, in groups of four)."""
    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_code_svg(device: TOTPDevice) -> str:
    # config_url is the otpauth:// URI with the issuer from OTP_TOTP_ISSUER.
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()
