"""Settings come from the environment; production settings pass Django's deployment check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x7#Kq2!vZp9@Lm4$Rt8^Wn3&Yb6*Hc1(Jd5)Fg0-Se2+Ua7=Io9~Ep4",
    "ALLOWED_HOSTS": "telemed.example.kg",
}


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**clean, "TELEMED_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deployment_check(tmp_path: Path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start(tmp_path: Path):
    env = {key: value for key, value in PRODUCTION.items() if key != "SECRET_KEY"}

    result = manage("check", env=env, tmp_path=tmp_path)

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_malformed_setting_fails_loudly(tmp_path: Path):
    result = manage("check", env={"DEBUG": "sometimes"}, tmp_path=tmp_path)

    assert result.returncode != 0
    assert "DEBUG='sometimes' is not a boolean" in result.stderr


def test_demo_world_never_loads_with_production_settings(tmp_path: Path):
    env = {**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}"}
    manage("migrate", "--noinput", env=env, tmp_path=tmp_path)

    result = manage("load_demo", env=env, tmp_path=tmp_path)

    assert result.returncode != 0
    assert "only in development" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "setting", "expected"),
    [
        ("DATABASE_URL", "postgres://u:p@db.example.kg:5432/telemed", "DATABASES", "postgresql"),
        ("REDIS_URL", "redis://cache.example.kg:6379/1", "CHANNEL_LAYERS", "RedisChannelLayer"),
        ("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend", "EMAIL_BACKEND", "smtp"),
        ("MEDIA_ROOT", "/srv/telemed/media", "MEDIA_ROOT", "/srv/telemed/media"),
        ("S3_BUCKET", "telemed-naryn", "STORAGES", "storages.backends.s3.S3Storage"),
        ("DICOM_PORT", "104", "DICOM_PORT", "104"),
    ],
)
def test_environment_switches_each_part_to_the_real_service(
    tmp_path: Path, variable: str, value: str, setting: str, expected: str
):
    code = f"from django.conf import settings; print(settings.{setting})"

    result = manage("shell", "-c", code, env={variable: value}, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
