"""Production settings are strict; the deploy checklist is clean."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG", "TRADEOPS_DEV")}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_production_without_secret_key_fails_with_a_clear_message():
    result = _manage("check")  # no TRADEOPS_DEV: production
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_check_deploy_with_production_env_has_no_errors():
    from cryptography.fernet import Fernet

    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-value-0123456789",
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(), ALLOWED_HOSTS="tradeops.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_simulation_is_the_default_and_trading_is_off():
    from django.conf import settings

    assert settings.SIMULATION_MODE is True
    assert settings.TRADING_ENABLED is False
