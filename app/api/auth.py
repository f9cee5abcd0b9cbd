"""Bearer API keys, each scoped to collections and to read or read+write.

With no keys configured the service is open (a local, single-user install): every request gets full access.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastapi import Request

from app.errors import Forbidden, Unauthorized
from app.settings import ApiKey


@dataclass(frozen=True)
class Access:
    """What the caller may do. `name` is the key's name (None when no keys are configured)."""

    name: str | None
    collections: frozenset[str] | None  # None: every collection
    write: bool

    @property
    def every_collection(self) -> bool:
        return self.collections is None

    def can_see(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def check(self, collection: str, write: bool = False) -> None:
        """Forbidden (403, not 404) for a collection outside the key's scope, whether or not it exists."""
        if not self.can_see(collection):
            raise Forbidden(f"API key {self.name!r} may not use collection {collection!r}")
        if write:
            self.check_write()

    def check_write(self) -> None:
        if not self.write:
            raise Forbidden(f"API key {self.name!r} is read-only: this request needs a key with write access")

    def check_every_collection(self, what: str) -> None:
        if not self.every_collection:
            raise Forbidden(f"API key {self.name!r} is limited to some collections: {what} needs a key with \"*\"")

    def visible(self, collections: Iterable[str]) -> list[str]:
        return [c for c in collections if self.can_see(c)]


OPEN = Access(name=None, collections=None, write=True)


@dataclass(frozen=True)
class _Key:
    name: str
    secret: bytes
    access: Access


class KeyRing:
    """The configured keys, held once per app; `lookup` compares in constant time against every key."""

    def __init__(self, keys: Mapping[str, ApiKey]) -> None:
        self._keys = [
            _Key(name, k.key.get_secret_value().encode(),
                 Access(name, None if "*" in k.collections else frozenset(k.collections), k.write))
            for name, k in keys.items()
        ]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def lookup(self, token: str) -> Access | None:
        found = None
        for k in self._keys:  # no early exit: the time taken does not tell which key (if any) matched
            if hmac.compare_digest(k.secret, token.encode()):
                found = k.access
        return found


_HOW = "send 'Authorization: Bearer <key>'"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31}")  # RFC 9110 token, short: a scheme, not a key


def bearer_token(header: str | None) -> str:
    """The key in an Authorization header: "Bearer", any whitespace (RFC 9110 says one space; tabs are common), key.

    Unauthorized says precisely what is wrong, without echoing anything that could be the key itself.
    """
    if header is None or not header.strip():
        raise Unauthorized(f"missing API key: {_HOW}")
    parts = header.split(None, 1)
    if parts[0].lower() != "bearer":
        if len(parts) == 2 and _SCHEME.fullmatch(parts[0]):
            raise Unauthorized(f"unsupported authorization scheme {parts[0]!r}: {_HOW}")
        raise Unauthorized(f"malformed Authorization header: no 'Bearer' scheme before the key; {_HOW}")
    token = parts[1].strip() if len(parts) == 2 else ""
    if not token:
        raise Unauthorized(f"malformed Authorization header: no key after 'Bearer'; {_HOW}")
    return token


def authenticate(request: Request) -> Access:
    ring: KeyRing = request.app.state.api_keys
    if not ring:
        return OPEN
    access = ring.lookup(bearer_token(request.headers.get("authorization")))
    if access is None:
        raise Unauthorized("invalid API key")
    return access


def require_key(request: Request, write: bool = False) -> Access:
    """The caller's access; 401 without a valid key, 403 for a read-only key where `write` is asked."""
    access = authenticate(request)
    if write:
        access.check_write()
    return access
