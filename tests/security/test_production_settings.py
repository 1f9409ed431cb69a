"""Secure by default: a process with no configuration is production; development is one switch.

Each test runs Django in a subprocess with exactly the environment a deployment would have.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
# The documented production environment (README "Configuration", .env.example).
PRODUCTION_ENV = {
    "SECRET_KEY": "prod-" + "k" * 30 + "-0123456789abcdefghijklmnopqrstuvwxyz",
    "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "tradeops.example.com",
}

PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from django.test import Client
c = Client()
out = {"debug": settings.DEBUG}
r = c.get("/no-such-page/", secure=True, HTTP_HOST="tradeops.example.com")
out["404"] = [r.status_code, r.content.decode(errors="replace")]
r = c.get("/admin/login/", secure=True, HTTP_HOST="evil.example.net")
out["foreign_host"] = [r.status_code, r.content.decode(errors="replace")]
r = c.get("/admin/login/", HTTP_HOST="tradeops.example.com")
out["http"] = [r.status_code, r.headers.get("Location", "")]
r = c.get("/healthz", secure=True, HTTP_HOST="tradeops.example.com")
out["headers"] = dict(r.headers)
out["cookies"] = [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECURE_HSTS_SECONDS]
print("PROBE" + json.dumps(out))
"""


def run(code_or_args, env_overrides, *, python_code=True):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG", "TRADEOPS_DEV", "ALLOWED_HOSTS")}
    env.update(DJANGO_SETTINGS_MODULE="tradeops.settings", LOG_LEVEL="WARNING", **env_overrides)
    args = [sys.executable, "-c", code_or_args] if python_code else [sys.executable, "manage.py", *code_or_args]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def probe(env_overrides) -> dict:
    result = run(PROBE, env_overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("PROBE", 1)[1])


def test_production_settings_refuse_debug_pages():
    out = probe(PRODUCTION_ENV)
    assert out["debug"] is False
    status, body = out["404"]
    assert status == 404 and "URLconf" not in body and "admin/" not in body and len(body) < 1000
    status, body = out["foreign_host"]
    assert status == 400 and "DisallowedHost" not in body and "REDIS_URL" not in body and len(body) < 1000
    # plain HTTP is redirected to HTTPS; answers carry HSTS, CSP; cookies are HTTPS-only
    assert out["http"][0] == 301 and out["http"][1].startswith("https://")
    headers = out["headers"]
    assert "max-age=" in headers["Strict-Transport-Security"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert out["cookies"][0] is True and out["cookies"][1] is True and out["cookies"][2] >= 31536000


def test_the_development_switch_turns_on_debug_and_relaxes_https_only():
    out = probe({"TRADEOPS_DEV": "true", **PRODUCTION_ENV})
    assert out["debug"] is True
    assert out["http"][0] == 200  # no HTTPS redirect on http://127.0.0.1
    assert out["cookies"] == [False, False, 0]
    # ... and nothing else: the same security headers as production
    headers = out["headers"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_debug_true_without_the_switch_is_refused():
    result = run(["check"], {"DEBUG": "true", **PRODUCTION_ENV}, python_code=False)
    assert result.returncode != 0 and "TRADEOPS_DEV" in result.stderr


def test_check_deploy_is_clean_with_the_documented_production_environment():
    result = run(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV, python_code=False)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout


def test_production_never_generates_a_key(tmp_path):
    keys_file = tmp_path / "dev-keys.json"
    result = run(["check"], {"TRADEOPS_DEV_KEYS_FILE": str(keys_file)}, python_code=False)
    assert result.returncode != 0 and "SECRET_KEY is not set" in result.stderr
    assert not keys_file.exists()


def test_development_generates_its_keys_once_into_a_private_file(tmp_path):
    keys_file = tmp_path / "var" / "dev-keys.json"
    show = "import django; django.setup(); from django.conf import settings; " \
           "print('KEYS', settings.SECRET_KEY, settings.FIELD_ENCRYPTION_KEYS[0])"
    env = {"TRADEOPS_DEV": "true", "TRADEOPS_DEV_KEYS_FILE": str(keys_file)}
    first = run(show, env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    stored = json.loads(keys_file.read_text())
    assert first.stdout.split("KEYS ", 1)[1].split() == [stored["SECRET_KEY"], stored["FIELD_ENCRYPTION_KEY"]]
    Fernet(stored["FIELD_ENCRYPTION_KEY"].encode())  # a valid key
    second = run(show, env)
    assert second.stdout.split("KEYS ", 1)[1] == first.stdout.split("KEYS ", 1)[1]  # read back, not regenerated


def test_no_key_in_the_repository():
    from django.conf import settings

    ignored = subprocess.run(["git", "check-ignore", "-q", "var/dev-keys.json"], cwd=ROOT)
    assert ignored.returncode == 0, "var/dev-keys.json must be git-ignored"
    for secret in (settings.SECRET_KEY, *settings.FIELD_ENCRYPTION_KEYS):
        # -e: a generated key may start with "-" (1 in 64), which git would read as an option
        found = subprocess.run(["git", "grep", "-q", "-F", "-e", secret], cwd=ROOT)
        assert found.returncode == 1, "a key in use is in a tracked file"
    # the keys that used to be committed protect nothing any more
    for old in ("dev-only-insecure-secret-key", "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="):
        assert old not in (settings.SECRET_KEY, *settings.FIELD_ENCRYPTION_KEYS)
        assert subprocess.run(["git", "grep", "-q", "-F", "-e", old, "--", "*.py", ":!tests/"], cwd=ROOT).returncode == 1
