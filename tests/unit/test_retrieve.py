"""Action `retrieve` (worker/retrieve.py): what a part is named by before it is stored (issue 12, 6).

A body whose file meta header has a zero group length, or no meta at all, holding another SOP instance was
stored as the requested `.dcm` before; archive would then have checked those bytes against themselves.
"""

from __future__ import annotations

import pytest

from tests.unit.fakes import BUCKET, DESTINATION, Fakes, sop
from tests.unit.test_part10 import CT_IMAGE, EXPLICIT_LE_UID, OTHER, dataset, meta_group, part10
from worker.errors import Code, PermanentError, RetryableError
from worker.models import Instance
from worker.request import Action
from worker.retrieve import SeriesCopy

HEADERS = {"content-type": "application/dicom"}


def copy_of(fakes: Fakes) -> SeriesCopy:
    return SeriesCopy(fakes.job(Action.RETRIEVE, destination=DESTINATION), DESTINATION)


def wanted(fakes: Fakes) -> Instance:
    series = fakes.source.series
    return Instance(series.study_uid, series.series_uid, sop(1), CT_IMAGE)


@pytest.mark.parametrize(
    "body",
    [
        part10(meta_group(OTHER, EXPLICIT_LE_UID, group_length=0), dataset(OTHER)),  # zero group length
        dataset(OTHER),  # no preamble, no meta: the dataset alone
        part10(b"", dataset(OTHER)),  # a preamble and DICM, no meta
    ],
    ids=["zero-group-length", "no-preamble", "no-meta"],
)
def test_a_part_holding_another_instance_is_never_stored_as_the_requested_one(body: bytes) -> None:
    fakes = Fakes()
    copy = copy_of(fakes)

    with pytest.raises(RetryableError, match="another instance"):
        copy.store_part(wanted(fakes), HEADERS, iter([body]))

    assert fakes.bucket.uploads == []


def test_a_part_that_names_no_readable_instance_is_instance_unreadable() -> None:
    fakes = Fakes()
    copy = copy_of(fakes)

    with pytest.raises(PermanentError) as caught:
        copy.store_part(wanted(fakes), HEADERS, iter([b"\x00" * 300]))

    assert caught.value.code is Code.INSTANCE_UNREADABLE
    assert fakes.bucket.uploads == []


def test_a_part_naming_the_requested_instance_is_stored() -> None:
    fakes = Fakes()
    body = part10(meta_group(sop(1), EXPLICIT_LE_UID, group_length=0), dataset(sop(1)))

    copied = copy_of(fakes).store_part(wanted(fakes), HEADERS, iter([body]))

    assert copied.uploaded and copied.size == len(body)
    assert fakes.bucket.data(BUCKET, copied.object_name) == body


def test_a_part_shorter_than_its_content_length_is_never_stored() -> None:
    """The part's Content-Length is the upload's announced size (an object of known length streams in
    one request): a body that ends before it is a broken transfer, retried, and nothing is created."""
    fakes = Fakes()
    body = part10(meta_group(sop(1), EXPLICIT_LE_UID, group_length=0), dataset(sop(1)))
    headers = {**HEADERS, "content-length": str(len(body) + 10)}

    with pytest.raises(RetryableError, match="bytes"):
        copy_of(fakes).store_part(wanted(fakes), headers, iter([body]))

    assert fakes.bucket.objects == {}
