"""Delivery to one channel. Each sender raises ``DeliveryError`` with a short reason on failure;
the caller records it (``Delivery``) and carries on with the next channel.

- e-mail: Django's mail (EMAIL_* settings / EMAIL_URL), one message to the listed addresses.
- webhook: ``POST`` of a JSON body; header ``X-Tradeops-Signature: sha256=<hex>`` is the
  HMAC-SHA256 of the exact body bytes with the channel's secret, ``X-Tradeops-Timestamp`` the
  send time (also inside the body, so a replay is detectable by the receiver).
- Telegram: Bot API ``sendMessage`` at ``<base URL>/bot<token>/sendMessage`` (the base URL is
  configurable so a proxy or a local stand-in can be used).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection

SIGNATURE_HEADER = "X-Tradeops-Signature"
TIMESTAMP_HEADER = "X-Tradeops-Timestamp"


class DeliveryError(Exception):
    pass


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_email(channel, subject: str, text: str, payload: dict) -> None:
    to = [a.strip() for a in channel.target.split(",") if a.strip()]
    try:
        with get_connection(timeout=settings.ALERTS_SEND_TIMEOUT_S) as conn:
            EmailMessage(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=to,
                         connection=conn).send()
    except Exception as exc:  # noqa: BLE001 - smtplib/socket errors of every kind
        raise DeliveryError(f"mail: {exc.__class__.__name__}: {str(exc)[:200]}") from exc


def _post(url: str, body: bytes, headers: dict, what: str) -> requests.Response:
    try:
        resp = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                             timeout=settings.ALERTS_SEND_TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as exc:
        raise DeliveryError(f"{what}: {exc.__class__.__name__}") from exc
    if resp.status_code >= 300:
        raise DeliveryError(f"{what}: HTTP {resp.status_code} {resp.text[:200]}")
    return resp


def send_webhook(channel, subject: str, text: str, payload: dict) -> None:
    body = json.dumps({**payload, "subject": subject, "text": text}, sort_keys=True).encode()
    headers = {TIMESTAMP_HEADER: str(payload["sent_at"])}
    if channel.secret:
        headers[SIGNATURE_HEADER] = sign(channel.secret, body)
    _post(channel.target, body, headers, "webhook")


def send_telegram(channel, subject: str, text: str, payload: dict) -> None:
    if not channel.secret:
        raise DeliveryError("telegram: the channel has no bot token")
    url = f"{channel.telegram_api_url}/bot{channel.secret}/sendMessage"
    body = json.dumps({"chat_id": channel.target.strip(), "text": f"{subject}\n{text}"[:4096],
                       "disable_web_page_preview": True}).encode()
    resp = _post(url, body, {}, "telegram")
    try:
        answer = resp.json()
    except ValueError:
        raise DeliveryError("telegram: answer is not JSON") from None
    if not answer.get("ok"):
        raise DeliveryError(f"telegram: {answer.get('description', 'not ok')}"[:300])


SENDERS = {"email": send_email, "webhook": send_webhook, "telegram": send_telegram}
