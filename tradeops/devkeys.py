"""Development keys, generated on first use into a git-ignored local file.

No key committed to the repository protects anything: with ``TRADEOPS_DEV=true`` and no
``SECRET_KEY`` / ``FIELD_ENCRYPTION_KEY`` in the environment, the settings ask this module, which
creates ``var/dev-keys.json`` (mode 0600, ``/var/`` is in .gitignore) with fresh random keys the first
time and reads it afterwards, so a development database stays readable across restarts. Production
(``TRADEOPS_DEV`` unset) never comes here: the settings refuse to start without real keys.

Many processes start at once under ``make run`` (honcho): the file is written to a temporary name
and hard-linked into place, which fails if another process won the race; the loser then reads the
winner's keys, so every process ends up with the same ones.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet


def _generate() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }


def load_or_create(path: str | os.PathLike) -> dict[str, str]:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-keys-")
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp creates it 0600
            json.dump(_generate(), fh, indent=1)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use its keys
    finally:
        os.unlink(tmp)
    return json.loads(path.read_text())


def dev_key(name: str, path: str | os.PathLike) -> str:
    keys = load_or_create(path)
    if not keys.get(name):  # an older file without this key: add it, keep the others
        keys = {**_generate(), **keys}
        Path(path).write_text(json.dumps(keys, indent=1))
    return keys[name]
