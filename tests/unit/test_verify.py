"""Action `verify` (worker/verify.py) against the fakes: the archive against the store read now, or
against its manifest when the store no longer has the series; each difference named; nothing written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import worker.search
from tests.unit.fakes import (
    ACTION_SETTINGS,
    BUCKET,
    COMPLETION_TOPIC,
    DESTINATION,
    SERIES_PATH,
    Fakes,
    message,
    sop,
)
from worker.delivery import Worker
from worker.errors import Code, PermanentError
from worker.job import HandedOn
from worker.request import Action
from worker.retrieve import copy_series
from worker.verify import verify
from worker.wiring import actions


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    made = Fakes()
    monkeypatch.setattr(worker.search, "time", made.clock)
    yield made
    # verify writes nothing but its event
    assert made.bucket.uploads == []
    assert made.source.stored == []
    assert made.source.calls["delete_instance"] + made.source.calls["delete_series"] == 0


def archived(fakes: Fakes, count: int) -> dict[str, bytes]:
    """A series in the store and copied into the destination with its manifest."""
    originals = fakes.source.add_series(count)
    copy_series(fakes.job(Action.RETRIEVE, destination=DESTINATION))
    fakes.bucket.uploads.clear()
    fakes.source.calls.clear()
    return originals


def run(fakes: Fakes) -> dict[str, object]:
    result = verify(fakes.job(Action.VERIFY, destination=DESTINATION))
    assert isinstance(result, dict)
    return result


def differences(fakes: Fakes) -> list[dict[str, str]]:
    with pytest.raises(PermanentError) as error:
        verify(fakes.job(Action.VERIFY, destination=DESTINATION))
    assert error.value.code is Code.VERIFICATION_FAILED
    assert error.value.details["differenceCount"] == len(error.value.details["differences"])
    found: list[dict[str, str]] = error.value.details["differences"]
    return found


def test_an_archive_that_matches_the_store_is_verified(fakes: Fakes) -> None:
    originals = archived(fakes, 3)

    result = run(fakes)

    assert result == {
        "instanceCount": 3,
        "bytes": sum(len(data) for data in originals.values()),
        "verified": True,
        "destination": fakes.folder().uri,
        "manifestUri": f"gs://{BUCKET}/{fakes.folder().record('manifest.json')}",
        "checkedAgainst": "store",
    }
    assert fakes.source.calls["retrieve_instance"] == 3  # every instance read from the store now


def test_a_changed_object_a_missing_one_and_an_extra_instance_are_each_named(fakes: Fakes) -> None:
    archived(fakes, 3)
    fakes.bucket.replace(BUCKET, fakes.folder().instance(sop(1)), b"changed")
    fakes.bucket.remove(BUCKET, fakes.folder().instance(sop(2)))
    fakes.source.add(sop(4), number=4)

    assert differences(fakes) == [
        {"sopInstanceUID": sop(1), "problem": "object_differs"},
        {"sopInstanceUID": sop(2), "problem": "object_missing"},
        {"sopInstanceUID": sop(4), "problem": "not_in_archive"},
    ]


def test_an_archived_instance_the_store_lost_is_not_in_store(fakes: Fakes) -> None:
    archived(fakes, 3)
    fakes.source.instances.pop(sop(3))

    assert differences(fakes) == [{"sopInstanceUID": sop(3), "problem": "not_in_store"}]


def test_an_instance_in_the_store_that_changed_since_the_archive_differs(fakes: Fakes) -> None:
    archived(fakes, 2)
    fakes.source.add(sop(2), b"rewritten in the store")

    assert differences(fakes) == [{"sopInstanceUID": sop(2), "problem": "object_differs"}]


def test_an_object_that_disagrees_with_its_manifest_entry_differs(fakes: Fakes) -> None:
    archived(fakes, 2)
    # the object and the store agree with each other, but not with what the manifest recorded
    name = fakes.folder().instance(sop(1))
    fakes.bucket.replace(BUCKET, name, b"same in both")
    fakes.source.add(sop(1), b"same in both")

    assert differences(fakes) == [{"sopInstanceUID": sop(1), "problem": "object_differs"}]


def test_without_a_manifest_the_store_is_compared_with_the_objects(fakes: Fakes) -> None:
    bodies = {sop(n): fakes.source.add(sop(n), number=n) for n in (1, 2)}
    for uid, body in bodies.items():
        fakes.bucket.put(BUCKET, fakes.folder().instance(uid), body)

    result = run(fakes)

    assert (result["instanceCount"], result["checkedAgainst"]) == (2, "store")
    assert "manifestUri" not in result


def test_when_the_store_no_longer_has_the_series_the_manifest_is_checked(fakes: Fakes) -> None:
    originals = archived(fakes, 3)
    fakes.source.instances.clear()

    result = run(fakes)

    assert result["checkedAgainst"] == "manifest"
    assert (result["instanceCount"], result["bytes"], result["verified"]) == (
        3,
        sum(len(data) for data in originals.values()),
        True,
    )
    assert fakes.source.calls["retrieve_instance"] == 0


def test_against_the_manifest_a_changed_and_a_missing_object_are_named(fakes: Fakes) -> None:
    archived(fakes, 3)
    fakes.source.instances.clear()
    fakes.bucket.replace(BUCKET, fakes.folder().instance(sop(3)), b"changed")
    fakes.bucket.remove(BUCKET, fakes.folder().instance(sop(1)))

    assert differences(fakes) == [
        {"sopInstanceUID": sop(1), "problem": "object_missing"},
        {"sopInstanceUID": sop(3), "problem": "object_differs"},
    ]


def test_objects_without_a_manifest_or_a_store_series_are_never_claimed_verified(fakes: Fakes) -> None:
    fakes.bucket.put(BUCKET, fakes.folder().instance(sop(1)), b"an object")

    assert differences(fakes) == []


def test_nothing_anywhere_is_series_not_found(fakes: Fakes) -> None:
    with pytest.raises(PermanentError) as error:
        run(fakes)

    assert error.value.code is Code.SERIES_NOT_FOUND


def test_at_the_deadline_verify_is_handed_on(fakes: Fakes) -> None:
    archived(fakes, 6)
    job = fakes.job(Action.VERIFY, destination=DESTINATION, remaining=0.0)

    assert isinstance(verify(job), HandedOn)
    result = verify(fakes.follow_up(job))
    assert isinstance(result, dict) and result["verified"] is True


def test_the_verify_event_through_the_worker(fakes: Fakes) -> None:
    archived(fakes, 2)
    fakes.bucket.remove(BUCKET, fakes.folder().instance(sop(2)))
    body = {"action": "verify", "series": SERIES_PATH, "destination": DESTINATION.uri()}

    event = Worker(ACTION_SETTINGS, fakes.ports, actions()).handle(message(body))

    assert event is not None and event.status == "failed"
    (published,) = fakes.publisher.to(COMPLETION_TOPIC)  # validated against the schema on the way
    assert published.json()["error"]["details"]["differences"] == [
        {"sopInstanceUID": sop(2), "problem": "object_missing"}
    ]
