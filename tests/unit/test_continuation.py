"""KeyRing: the HMAC that proves a follow-up message came from the worker itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from worker.continuation import Key, KeyRing

OLD = "old-1=" + "o" * 32
NEW = "new-2=" + "n" * 40
BODY: dict[str, Any] = {
    "action": "delete",
    "series": "projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2/series/1.2.3",
    "requestId": "req-1",
    "continuation": 1,
    "operation": "projects/p/locations/l/datasets/d/operations/42",
}


def test_the_first_key_signs_and_the_signature_names_it() -> None:
    signature = KeyRing.parse(f"{NEW},{OLD}").sign(BODY)

    scheme, key_id, mac = signature.split(":")
    assert (scheme, key_id) == ("v1", "new-2")
    assert len(base64.urlsafe_b64decode(mac + "=")) == 32


def test_the_mac_is_hmac_sha256_over_the_canonical_body() -> None:
    """Sorted keys, compact separators, domain-separated: independent of the sender's key order."""
    canonical = json.dumps(BODY, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(b"n" * 40, b"dicom-series-worker/continuation/v1\n" + canonical, hashlib.sha256)
    mac = base64.urlsafe_b64encode(expected.digest()).rstrip(b"=").decode()

    assert KeyRing.parse(NEW).sign(BODY) == f"v1:new-2:{mac}"
    assert KeyRing.parse(NEW).verify(dict(reversed(BODY.items())), f"v1:new-2:{mac}")


def test_every_key_verifies_during_a_rotation() -> None:
    signed_with_old = KeyRing.parse(OLD).sign(BODY)
    signed_with_new = KeyRing.parse(NEW).sign(BODY)

    for ring in (KeyRing.parse(f"{OLD}\n{NEW}"), KeyRing.parse(f"{NEW} , {OLD}")):
        assert ring.verify(BODY, signed_with_old)
        assert ring.verify(BODY, signed_with_new)
    assert not KeyRing.parse(NEW).verify(BODY, signed_with_old)  # the old key dropped


def test_a_signature_under_an_unknown_key_id_is_refused() -> None:
    mac = KeyRing.parse(NEW).sign(BODY).split(":")[2]

    assert not KeyRing.parse(NEW).verify(BODY, f"v1:old-1:{mac}")


def test_another_secret_under_the_same_key_id_is_refused() -> None:
    forged = KeyRing.parse("new-2=" + "x" * 40).sign(BODY)

    assert not KeyRing.parse(NEW).verify(BODY, forged)


@pytest.mark.parametrize(
    "change",
    [
        {"series": BODY["series"].replace("1.2.3", "1.2.4")},
        {"requestId": "req-2"},
        {"operation": "projects/p/locations/l/datasets/d/operations/43"},
        {"action": "archive"},
        {"continuation": 2},
        {"destination": "gs://other-bucket/x"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_change_to_the_body_breaks_the_signature(change: dict[str, Any]) -> None:
    ring = KeyRing.parse(NEW)

    assert not ring.verify({**BODY, **change}, ring.sign(BODY))


def test_a_removed_field_breaks_the_signature() -> None:
    ring = KeyRing.parse(NEW)
    without_operation = {k: v for k, v in BODY.items() if k != "operation"}

    assert not ring.verify(without_operation, ring.sign(BODY))


@pytest.mark.parametrize(
    "signature",
    [None, 7, "", "v1:new-2", "v2:new-2:AAAA", "v1:new-2:not base64!", "v1::AAAA", ["v1", "new-2"]],
)
def test_malformed_signatures_are_refused(signature: object) -> None:
    assert not KeyRing.parse(NEW).verify(BODY, signature)


def test_a_truncated_mac_is_refused() -> None:
    ring = KeyRing.parse(NEW)

    assert not ring.verify(BODY, ring.sign(BODY)[:-2])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give one or more KEY_ID=SECRET entries"),
        (" , ", "give one or more KEY_ID=SECRET entries"),
        ("n" * 40, "entry 1 is not KEY_ID=SECRET"),
        (f"{NEW},k=", "entry 2 is not KEY_ID=SECRET"),
        ("=" + "n" * 40, "entry 1: the key id must be 1 to 32 letters, digits, _ or -"),
        ("k.1=" + "n" * 40, "entry 1: the key id must be 1 to 32 letters, digits, _ or -"),
        ("k" * 33 + "=" + "n" * 40, "entry 1: the key id must be 1 to 32 letters, digits, _ or -"),
        ("k1=" + "n" * 31, "the secret of key k1 must be at least 32 characters"),
        (f"{NEW},new-2=" + "m" * 40, "key id new-2 appears twice"),
    ],
)
def test_key_ring_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        KeyRing.parse(text)

    assert str(caught.value) == message


def test_no_error_message_repeats_a_secret() -> None:
    secret = "Z" * 31
    for text in (secret, f"k1={secret}", f"bad.id={secret}Z"):
        with pytest.raises(ValueError) as caught:
            KeyRing.parse(text)
        assert "ZZZZ" not in str(caught.value)


def test_secrets_are_never_in_repr() -> None:
    ring = KeyRing.parse(f"{NEW},{OLD}")

    assert repr(ring) == "KeyRing(key_ids=('new-2', 'old-1'))"
    assert "nnnn" not in repr(ring.keys[0])
    assert "nnnn" not in str(ring.keys)


def test_a_key_ring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="give one or more KEY_ID=SECRET entries"):
        KeyRing(())
    assert KeyRing((Key("k", b"s" * 32),)).key_ids == ("k",)
