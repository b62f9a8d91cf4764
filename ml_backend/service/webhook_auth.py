"""Webhooks the backend can believe: Label Studio sends its own with a per-project token header.

Label Studio 1.23 posts webhooks without credentials, so by default a webhook only names a task and
the backend fetches it with its own token (a forged one costs a fetch, never a wrong rating). But
Label Studio stores extra headers per webhook and sends them with every event: the backend, with
its API key, adds ``WEBHOOK_HEADER: <token>`` to the webhook Label Studio created for it, and a
webhook that carries the token is applied from its payload, without the fetch. The token is an
HMAC of the project id under a secret kept in the state folder, so it survives restarts and differs
per project.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import LabelStudioError
from ..labelstudio.client import LabelStudioClient
from ..labelstudio.webhooks import WEBHOOK_HEADER

log = logging.getLogger(__name__)


class WebhookSigner:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "webhook-secret"
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        """The secret: read, or created once (owner-only file, created exclusively)."""
        if self._secret is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self._secret = bytes.fromhex(self._path.read_text().strip())
            else:
                key = secrets.token_hex(32)
                with os.fdopen(fd, "w") as f:
                    f.write(key)
                self._secret = bytes.fromhex(key)
        return self._secret

    def token(self, project_id: int) -> str:
        return hmac.new(self._key(), f"project:{project_id}".encode(), hashlib.sha256).hexdigest()

    def verifies(self, project_id: int, token: str | None) -> bool:
        """Whether ``token`` is the project's; False also when the secret cannot be read."""
        if not token:
            return False
        try:
            return hmac.compare_digest(str(token), self.token(project_id))
        except (OSError, ValueError):
            return False

    def sign(self, client: LabelStudioClient, project_id: int, hosts: Iterable[str]) -> int:
        """Add the token to the project's webhooks that point at this backend (``hosts``: the
        host:port Label Studio's own /setup requests named); how many were changed. A failure
        is logged and leaves webhooks fetched as before."""
        hosts = set(hosts)
        changed = 0
        try:
            for hook in client.webhooks(project_id):
                headers: dict[str, Any] = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
                url = str(hook.get("url") or "")
                if urlsplit(url).netloc not in hosts or not url.rstrip("/").endswith("/webhook"):
                    continue
                if headers.get(WEBHOOK_HEADER) != self.token(project_id):
                    client.set_webhook_headers(int(hook["id"]), {**headers, WEBHOOK_HEADER: self.token(project_id)})
                    changed += 1
        except (LabelStudioError, OSError, KeyError, TypeError, ValueError) as exc:
            log.warning("project %s: webhooks not signed (each rating's task is fetched instead): %s",
                        project_id, exc)
        return changed
