import pytest
from cryptography.fernet import Fernet

from services.core.secrecy import MASK, Redactor, Sealer, SealError, find_secret_fields


def test_sealed_secrets_round_trip_and_hide_the_value() -> None:
    sealer = Sealer(Fernet.generate_key().decode())
    sealed = sealer.seal({"api_key": "sk-live-1234567890"})
    assert sealed is not None and "sk-live" not in sealed
    assert sealer.unseal(sealed) == {"api_key": "sk-live-1234567890"}
    assert sealer.seal({}) is None and sealer.unseal(None) == {}


def test_a_different_key_cannot_open_sealed_secrets() -> None:
    sealed = Sealer(Fernet.generate_key().decode()).seal({"api_key": "sk-123456"})
    with pytest.raises(SealError):
        Sealer(Fernet.generate_key().decode()).unseal(sealed)


def test_redactor_masks_known_values_pairs_and_bearer_tokens() -> None:
    redactor = Redactor(["sk-live-1234567890"])
    text = redactor.text(
        "401 from https://api/x?api_key=abcdef123 with sk-live-1234567890 "
        "Authorization: Bearer eyJhbGciOi.payload.sig password=hunter22"
    )
    for secret in ("abcdef123", "sk-live-1234567890", "eyJhbGciOi", "hunter22"):
        assert secret not in text
    assert MASK in text


def test_redactor_masks_secret_fields_in_nested_values() -> None:
    value = {"data": {"name": "x", "api_key": "k-123456"}, "items": [{"token": "t-1234567"}]}
    assert Redactor().value(value) == {
        "data": {"name": "x", "api_key": MASK},
        "items": [{"token": MASK}],
    }


def test_secret_fields_are_found_by_path() -> None:
    found = find_secret_fields({"a": {"apiKey": "x"}, "b": [{"password": "y"}], "c": ""})
    assert found == ["a.apiKey", "b[0].password"]


def test_after_a_rotation_old_secrets_open_and_new_ones_are_sealed_with_the_new_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = Sealer(old).seal({"api_key": "sk-sealed-before"})
    rotated = Sealer(f"{new},{old}")
    assert rotated.unseal(before) == {"api_key": "sk-sealed-before"}
    after = rotated.seal({"api_key": "sk-sealed-after"})
    assert Fernet(new.encode()).decrypt(after.encode())  # type: ignore[union-attr]
    with pytest.raises(SealError):
        Sealer(old).unseal(after)  # a process still on the old key alone cannot open it
    with pytest.raises(SealError):
        Sealer(new).unseal(before)  # why the old key stays listed until old tasks are gone


def test_secret_paths_name_keys_and_list_indexes() -> None:
    value = {"items": [{"data": {"name": "a"}}, {"data": {"password_hint": "b", "tokens": 3}}]}
    assert find_secret_fields(value) == ["items[1].data.password_hint"]


def test_a_urls_password_is_masked_and_its_credentials_split_and_put_back() -> None:
    from services.core.secrecy import Redactor, split_credentials, with_credentials

    text = "fetch failed: https://bob:hunter2@files.example/a.pdf and redis://:pw0rd@r:6379/0"
    masked = Redactor().text(text)
    assert "hunter2" not in masked and "pw0rd" not in masked
    assert "https://bob:***@files.example/a.pdf" in masked
    url = "https://bob:hunter2@files.example:8443/a.pdf?x=1"
    bare, credentials = split_credentials(url)
    assert (bare, credentials) == ("https://files.example:8443/a.pdf?x=1", "bob:hunter2")
    assert with_credentials(bare, credentials) == url
    assert split_credentials("https://files.example/a.pdf") == ("https://files.example/a.pdf", None)
