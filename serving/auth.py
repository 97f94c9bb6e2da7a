"""Who may change the model: a bearer token, from `REBQ_SERVE_TOKEN` or a token file, compared in constant time."""

from __future__ import annotations

import hmac
import os

from serving.config import AuthConfig

TOKEN_VARIABLE = "REBQ_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
CHALLENGE = 'Bearer realm="rebq-serve"'


class AuthError(ValueError):
    """A token that cannot be read or is too weak to guard anything."""


def load_token(config: AuthConfig) -> str | None:
    """The token: the environment variable first, else the token file; None when neither is set."""
    value = os.environ.get(TOKEN_VARIABLE)
    source = TOKEN_VARIABLE
    if value is None and config.token_file is not None:
        source = f"token file {config.token_file}"
        try:
            value = config.token_file.read_text()
        except OSError as error:
            raise AuthError(f"{source}: {error.strerror}") from error
    if value is None:
        return None
    value = value.strip()
    if len(value) < MIN_TOKEN_CHARS:
        raise AuthError(f"{source}: the token must have at least {MIN_TOKEN_CHARS} characters")
    return value


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `token` as a bearer token."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
