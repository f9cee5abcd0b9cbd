"""Bearer API keys. With no keys configured the service is open (a local, single-user install)."""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import Unauthorized


def require_key(request: Request, write: bool = False) -> str | None:
    """Return the key's name, or None when no keys are configured. Compares in constant time."""
    keys: dict[str, str] = request.app.state.api_keys
    if not keys:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    for name, secret in keys.items():
        if hmac.compare_digest(secret.encode(), token.strip().encode()):
            return name
    raise Unauthorized("invalid API key")
