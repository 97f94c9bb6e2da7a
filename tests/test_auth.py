import pytest

from serving.auth import CHALLENGE, TOKEN_VARIABLE, AuthError, authorized, load_token
from serving.config import AuthConfig
from serving.launcher import check_host

TOKEN = "s3cret-token-of-32-characters-xx"


def test_token_from_the_environment_first_then_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    assert load_token(AuthConfig()) is None
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert load_token(AuthConfig(token_file=token_file)) == TOKEN
    monkeypatch.setenv(TOKEN_VARIABLE, "another-token-from-the-env")
    assert load_token(AuthConfig(token_file=token_file)) == "another-token-from-the-env"


def test_weak_or_unreadable_tokens_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(TOKEN_VARIABLE, "short")
    with pytest.raises(AuthError, match="at least 16 characters"):
        load_token(AuthConfig())
    monkeypatch.delenv(TOKEN_VARIABLE)
    with pytest.raises(AuthError, match="token file .*missing"):
        load_token(AuthConfig(token_file=tmp_path / "missing"))


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_bearer_token_is_authorized(header, allowed):
    assert authorized(header, TOKEN) is allowed


def test_no_token_no_outward_host():
    check_host("127.0.0.1", None)
    check_host("0.0.0.0", TOKEN)
    with pytest.raises(ValueError, match="host 0.0.0.0: no token is set"):
        check_host("0.0.0.0", None)
    assert CHALLENGE.startswith("Bearer ")
