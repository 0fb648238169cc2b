"""parse_request: every accepted form of the message, and every rejection with its code and message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.fakes import (
    DATASET,
    DICOMWEB_SERIES_PATH,
    LOCATION,
    MESSAGE_ID,
    PROJECT,
    SERIES,
    SERIES_PATH,
    SOP,
    STORE,
    STORE_ID,
    STUDY,
    message,
)
from worker.continuation import KeyRing
from worker.errors import Code, PermanentError
from worker.models import DicomStore, GcsLocation, SeriesRef
from worker.request import (
    MAX_MESSAGE_BYTES,
    Action,
    Mode,
    RestoreMethod,
    RetrieveOptions,
    SeriesRequest,
    parse_request,
    store_allowed,
)

SEPARATE = {
    "projectsId": PROJECT,
    "locationsId": LOCATION,
    "datasetsId": DATASET,
    "dicomStoresId": STORE_ID,
    "studiesId": STUDY,
    "seriesId": SERIES,
}
OPERATION = f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations/8642097531"
HEALTHCARE_SERIES = SeriesRef(DicomStore(PROJECT, LOCATION, DATASET, STORE_ID), STUDY, SERIES)
KEYS = KeyRing.parse("worker-1=" + "k" * 32)
UNSIGNED = (
    "fields the worker sets on its own follow-up messages (operation, instance, continuation, signature)"
    " need its signature"
)


def parse(body: object, attributes: dict[str, str] | None = None, **kwargs: Any) -> SeriesRequest:
    """Parsed as the worker parses: with its key ring."""
    return parse_request(message(body, attributes, **kwargs), KEYS)


def signed(body: dict[str, Any], keys: KeyRing = KEYS) -> dict[str, Any]:
    """`body` as the worker hands it on: with its signature."""
    return {**body, "signature": keys.sign(body)}


def rejected(body: object, attributes: dict[str, str] | None = None, **kwargs: Any) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        parse(body, attributes, **kwargs)
    return caught.value


def search(**fields: Any) -> dict[str, Any]:
    return {"action": "search", "series": SERIES_PATH, **fields}


# -- accepted forms -------------------------------------------------------------------------------


def test_series_as_healthcare_path() -> None:
    request = parse({"action": "search", "series": SERIES_PATH})

    assert request == SeriesRequest(Action.SEARCH, HEALTHCARE_SERIES, MESSAGE_ID)
    assert request.series.store is not None
    assert request.series.store.name == STORE
    assert request.destination is None
    assert request.options == RetrieveOptions("*", False, Mode.AUTO)
    assert request.instance_uid is None
    assert request.operation is None
    assert request.continuation == 0


def test_series_path_with_a_leading_slash() -> None:
    assert parse(search(series="/" + SERIES_PATH)).series == HEALTHCARE_SERIES


def test_series_as_dicomweb_relative_path() -> None:
    request = parse({"action": "retrieve", "series": DICOMWEB_SERIES_PATH})

    assert request.series == SeriesRef(None, STUDY, SERIES)
    assert request.action is Action.RETRIEVE


def test_six_separate_fields_name_the_same_series_as_the_path() -> None:
    request = parse({"action": "search", **SEPARATE})

    assert request.series == HEALTHCARE_SERIES
    assert request == parse(search())


def test_study_and_series_fields_alone_name_a_dicomweb_series() -> None:
    request = parse({"action": "search", "studiesId": STUDY, "seriesId": SERIES})

    assert request.series == SeriesRef(None, STUDY, SERIES)


@pytest.mark.parametrize("action", [action for action in Action if action is not Action.SWEEP])
def test_action_from_the_message_attribute_when_absent_from_the_data(action: Action) -> None:
    options = {"options": {"storageClass": "ARCHIVE"}} if action is Action.TIER else {}
    request = parse({"series": SERIES_PATH, **options}, {"action": str(action)})

    assert request.action is action


@pytest.mark.parametrize(("action", "accepted"), [("restore", "method"), ("verify", "none")])
def test_restore_and_verify_take_a_destination_and_their_options(action: str, accepted: str) -> None:
    request = parse({"action": action, "series": SERIES_PATH, "destination": "gs://archive/dicom"})

    assert (request.action, str(request.destination)) == (Action(action), "gs://archive/dicom")
    assert invalid_request({"action": action, "series": SERIES_PATH, "options": {"mode": "series"}}) == (
        f"unknown options for {action}: 1; accepted: {accepted}"
    )


def test_restore_method() -> None:
    body = {"action": "restore", "series": SERIES_PATH}
    assert parse(body).options.method is RestoreMethod.STOW
    assert parse({**body, "options": {"method": "import"}}).options.method is RestoreMethod.IMPORT
    assert (
        invalid_request({**body, "options": {"method": "copy"}})
        == "options.method must be 'stow' or 'import'"
    )


def test_action_in_the_data_wins_over_the_attribute() -> None:
    assert parse(search(), {"action": "delete"}).action is Action.SEARCH


def test_request_id_defaults_to_the_message_id() -> None:
    assert parse(search(), message_id="99887766").request_id == "99887766"


def test_request_id_from_the_data() -> None:
    assert parse(search(requestId="job-2024.01:a_b")).request_id == "job-2024.01:a_b"


def test_request_id_of_128_characters_is_accepted() -> None:
    assert parse(search(requestId="r" * 128)).request_id == "r" * 128


def test_destination() -> None:
    request = parse({"action": "retrieve", "series": SERIES_PATH, "destination": "gs://my-bucket/dicom/in"})

    assert request.destination == GcsLocation("my-bucket", "dicom/in")


def test_null_destination_is_no_destination() -> None:
    assert parse(search(destination=None)).destination is None


def test_retrieve_options() -> None:
    options = {"transferSyntax": "1.2.840.10008.1.2.1", "includeMetadata": True, "mode": "series"}
    request = parse({"action": "retrieve", "series": SERIES_PATH, "options": options})

    assert request.options == RetrieveOptions("1.2.840.10008.1.2.1", True, Mode.SERIES)


def test_retrieve_options_default_to_stored_bytes_and_the_mode_chosen_per_series() -> None:
    request = parse({"action": "retrieve", "series": SERIES_PATH, "options": {}})

    assert request.options == RetrieveOptions("*", False, Mode.AUTO)


def test_archive_mode_option() -> None:
    request = parse({"action": "archive", "series": SERIES_PATH, "options": {"mode": "series"}})

    assert request.options.mode is Mode.SERIES
    assert request.options.transfer_syntax == "*"


def test_store_notification_retrieves_one_instance() -> None:
    path = f"{SERIES_PATH}/instances/{SOP}"

    request = parse(path.encode("utf-8"), message_id="55501")

    assert request == SeriesRequest(Action.RETRIEVE, HEALTHCARE_SERIES, "55501", instance_uid=SOP)


def test_store_notification_with_surrounding_whitespace() -> None:
    request = parse(f"  {SERIES_PATH}/instances/{SOP}\n")

    assert request.instance_uid == SOP
    assert request.series == HEALTHCARE_SERIES


def test_store_notification_ignores_the_native_action_attribute() -> None:
    request = parse(f"{SERIES_PATH}/instances/{SOP}", {"action": "StoreInstances", "storeName": STORE})

    assert request.action is Action.RETRIEVE


def test_signed_instance_field_with_retrieve() -> None:
    body = signed({"action": "retrieve", "series": SERIES_PATH, "instance": SOP})

    assert parse(body).instance_uid == SOP


@pytest.mark.parametrize("action", ["delete", "archive"])
def test_operation_and_continuation_of_a_signed_follow_up(action: str) -> None:
    body = signed({"action": action, "series": SERIES_PATH, "operation": OPERATION, "continuation": 3})

    request = parse(body)

    assert request.operation == OPERATION
    assert request.continuation == 3


@pytest.mark.parametrize("continuation", [1, 10_000])
def test_continuation_range(continuation: int) -> None:
    assert parse(signed(search(continuation=continuation))).continuation == continuation


def test_continuation_zero_needs_no_signature() -> None:
    """What a sender (and the operator CLI) publishes: a new request, counted from 0."""
    assert parse(search(continuation=0)).continuation == 0


# -- follow-up fields only with the worker's signature ----------------------------------------------


def unsigned_refused(body: object, keys: KeyRing | None = KEYS) -> None:
    with pytest.raises(PermanentError) as caught:
        parse_request(message(body), keys)
    assert caught.value.code is Code.INVALID_REQUEST
    assert caught.value.message == UNSIGNED


@pytest.mark.parametrize(
    "body",
    [
        {"action": "delete", "series": SERIES_PATH, "operation": OPERATION},
        {"action": "archive", "series": SERIES_PATH, "operation": OPERATION, "continuation": 1},
        {"action": "retrieve", "series": SERIES_PATH, "instance": SOP},
        search(continuation=1),
        {"action": "retrieve", "series": SERIES_PATH, "continuation": 10_000, "destination": "gs://b-1/x"},
    ],
    ids=["operation", "operation-continuation", "instance", "continuation", "retrieve-continuation"],
)
def test_forged_follow_up_fields_are_refused(body: dict[str, Any]) -> None:
    """The forged delete follow-up made the worker report the series deleted with nothing done."""
    unsigned_refused(body)


def test_without_a_key_ring_no_follow_up_is_accepted() -> None:
    body = {"action": "delete", "series": SERIES_PATH, "operation": OPERATION, "continuation": 1}

    unsigned_refused(signed(body), keys=None)


def test_a_signature_by_another_key_is_refused() -> None:
    body = {"action": "delete", "series": SERIES_PATH, "operation": OPERATION, "continuation": 1}

    unsigned_refused(signed(body, KeyRing.parse("worker-1=" + "x" * 32)))
    unsigned_refused(signed(body, KeyRing.parse("worker-2=" + "k" * 32)))


def test_a_follow_up_signed_with_the_old_key_is_accepted_during_a_rotation() -> None:
    old = KeyRing.parse("old=" + "o" * 32)
    body = signed({"action": "delete", "series": SERIES_PATH, "operation": OPERATION, "continuation": 1}, old)
    rotated = KeyRing.parse(f"new={'n' * 32},old={'o' * 32}")

    assert parse_request(message(body), rotated).operation == OPERATION
    unsigned_refused(body, KeyRing.parse("new=" + "n" * 32))


OTHER_SERIES_PATH = SERIES_PATH.replace(SERIES, SERIES + ".9")
OTHER_OPERATION = OPERATION.replace("8642097531", "1357")


@pytest.mark.parametrize(
    "moved",
    [
        {"series": OTHER_SERIES_PATH},
        {"requestId": "another-request"},
        {"operation": OTHER_OPERATION},
        {"action": "archive"},
        {"continuation": 2},
        {"destination": "gs://my-bucket/elsewhere"},
    ],
    ids=lambda moved: next(iter(moved)),
)
def test_a_signature_moved_to_another_message_is_refused(moved: dict[str, Any]) -> None:
    genuine = signed(
        {
            "action": "delete",
            "series": SERIES_PATH,
            "requestId": "req-1",
            "operation": OPERATION,
            "continuation": 1,
        }
    )
    assert parse(genuine).operation == OPERATION

    unsigned_refused({**genuine, **moved})


def test_a_removed_field_breaks_the_signature() -> None:
    genuine = signed(
        {"action": "retrieve", "series": SERIES_PATH, "instance": SOP, "destination": "gs://b-1/x"}
    )

    unsigned_refused({k: v for k, v in genuine.items() if k != "destination"})


def test_a_signature_is_checked_on_a_message_without_follow_up_fields() -> None:
    """A signature is either the worker's over exactly this message or refused, whatever the message."""
    assert parse(signed(search())).series == HEALTHCARE_SERIES
    unsigned_refused({**search(), "signature": KEYS.sign(search(requestId="x"))})
    unsigned_refused({**search(), "signature": 7})


def test_a_store_notification_needs_no_signature() -> None:
    assert parse(f"{SERIES_PATH}/instances/{SOP}").instance_uid == SOP


def test_message_of_exactly_the_size_limit_is_accepted() -> None:
    text = json.dumps(search())
    data = text.encode("utf-8") + b" " * (MAX_MESSAGE_BYTES - len(text))
    assert len(data) == MAX_MESSAGE_BYTES

    assert parse(data).series == HEALTHCARE_SERIES


def test_uid_of_64_characters_is_accepted() -> None:
    uid = "1." + "2" * 62
    assert parse({"action": "search", "studiesId": uid, "seriesId": SERIES}).series.study_uid == uid


# -- malformed messages: invalid_message ----------------------------------------------------------


def test_not_utf8() -> None:
    error = rejected(b'{"action": "search", "series": "\xff\xfe"}')

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == "message data is not UTF-8"


@pytest.mark.parametrize("data", [b"hello", b"", b"{", b"{'action': 'search'}", b'{"action": "search",}'])
def test_not_json(data: bytes) -> None:
    error = rejected(data)

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == "message data is not JSON"


def test_deeply_nested_json_is_not_json() -> None:
    error = rejected(b"[" * 30_000 + b"]" * 30_000)

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == "message data is not JSON"


def test_json_number_too_long_to_convert_is_a_rejected_message() -> None:
    """Python refuses to convert integers of more than 4300 digits: still a bad message, not a crash."""
    error = rejected(b'{"action": "search", "continuation": ' + b"1" * 5000 + b"}")

    assert error.code is Code.INVALID_MESSAGE


@pytest.mark.parametrize("body", [[], ["search"], "search", 42, None, True])
def test_json_that_is_not_an_object(body: object) -> None:
    error = rejected(json.dumps(body).encode())

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == "message data must be a JSON object"


def test_oversized_message() -> None:
    text = json.dumps(search())
    data = text.encode("utf-8") + b" " * (MAX_MESSAGE_BYTES + 1 - len(text))

    error = rejected(data)

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == f"message data exceeds {MAX_MESSAGE_BYTES} bytes"


@pytest.mark.parametrize("message_id", ["id with spaces", "", "x" * 129, "a/b"])
def test_notification_with_a_message_id_unusable_as_request_id(message_id: str) -> None:
    error = rejected(f"{SERIES_PATH}/instances/{SOP}", message_id=message_id)

    assert error.code is Code.INVALID_MESSAGE
    assert error.message == "message id is not usable as a request id"


# -- wrong or missing fields: invalid_request ----------------------------------------------------


def invalid_request(body: object, attributes: dict[str, str] | None = None) -> str:
    error = rejected(body, attributes)
    assert error.code is Code.INVALID_REQUEST
    return error.message


def test_unknown_action() -> None:
    assert invalid_request(search(action="copy")) == (
        "unknown action; expected one of search, retrieve, delete, archive, restore, verify, tier, sweep"
    )


def test_unknown_action_in_the_attribute() -> None:
    assert invalid_request({"series": SERIES_PATH}, {"action": "SEARCH"}).startswith("unknown action")


@pytest.mark.parametrize("action", [1, ["search"], {"name": "search"}, True])
def test_action_that_is_not_a_string(action: object) -> None:
    assert invalid_request(search(action=action)) == "action must be a string"


@pytest.mark.parametrize("body", [{"series": SERIES_PATH}, {"action": None, "series": SERIES_PATH}])
def test_missing_action(body: dict[str, Any]) -> None:
    assert invalid_request(body) == "action is missing (in the data or the message attribute 'action')"


def test_unknown_fields_are_counted_not_named() -> None:
    """A sender's field names are sender text: the event carries neither them nor their values."""
    assert invalid_request(search(studyUID=STUDY, **{"DOE^JANE MRN 123456": 1})) == (
        "unknown fields: 2; accepted fields: action, continuation, datasetsId, destination, dicomStoresId,"
        " instance, locationsId, operation, options, projectsId, requestId, series, seriesId, signature,"
        " studiesId"
    )


@pytest.mark.parametrize(
    ("action", "options", "named"),
    [
        (
            "retrieve",
            {"compress": True, "DOE^JANE": 1},
            "unknown options for retrieve: 2; accepted: includeMetadata, mode, transferSyntax",
        ),
        ("archive", {"transferSyntax": "*"}, "unknown options for archive: 1; accepted: mode"),
        (
            "archive",
            {"includeMetadata": True, "mode": "series"},
            "unknown options for archive: 1; accepted: mode",
        ),
        ("search", {"mode": "series"}, "unknown options for search: 1; accepted: none"),
        ("delete", {"includeMetadata": False}, "unknown options for delete: 1; accepted: none"),
    ],
)
def test_unknown_options_are_counted_not_named(action: str, options: dict[str, Any], named: str) -> None:
    assert invalid_request({"action": action, "series": SERIES_PATH, "options": options}) == named


@pytest.mark.parametrize("options", [[], "mode=series", 1, True])
def test_options_that_are_not_an_object(options: object) -> None:
    body = {"action": "retrieve", "series": SERIES_PATH, "options": options}
    assert invalid_request(body) == "options must be an object"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"transferSyntax": 1.2}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": None}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": "jpeg"}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": "1.2..840"}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": "**"}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": "1." + "2" * 63}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"transferSyntax": "*; q=1"}, "options.transferSyntax must be '*' or a transfer syntax UID"),
        ({"includeMetadata": "true"}, "options.includeMetadata must be true or false"),
        ({"includeMetadata": 1}, "options.includeMetadata must be true or false"),
        ({"includeMetadata": None}, "options.includeMetadata must be true or false"),
        ({"mode": "fast"}, "options.mode must be 'auto', 'instances' or 'series'"),
        ({"mode": 1}, "options.mode must be 'auto', 'instances' or 'series'"),
        ({"mode": ["series"]}, "options.mode must be 'auto', 'instances' or 'series'"),
        ({"mode": "SERIES"}, "options.mode must be 'auto', 'instances' or 'series'"),
    ],
)
def test_options_of_the_wrong_type(options: dict[str, Any], named: str) -> None:
    assert invalid_request({"action": "retrieve", "series": SERIES_PATH, "options": options}) == named


def test_both_series_and_separate_fields() -> None:
    body = search(studiesId=STUDY, seriesId=SERIES)
    assert (
        invalid_request(body) == "give either series or the separate fields, not both (studiesId, seriesId)"
    )


def test_no_series_at_all() -> None:
    assert (
        invalid_request({"action": "search"}) == "series is missing: give series, or projectsId ... seriesId"
    )


@pytest.mark.parametrize("missing", ["studiesId", "seriesId"])
def test_missing_study_or_series_field(missing: str) -> None:
    body = {"action": "search", **SEPARATE}
    del body[missing]
    assert invalid_request(body) == f"{missing} is missing"


@pytest.mark.parametrize("missing", ["projectsId", "locationsId", "datasetsId", "dicomStoresId"])
def test_missing_store_field(missing: str) -> None:
    body = {"action": "search", **SEPARATE}
    del body[missing]
    assert invalid_request(body) == f"missing fields of the DICOM store: {missing}"


def test_several_missing_store_fields_are_all_named() -> None:
    body = {"action": "search", "projectsId": PROJECT, "studiesId": STUDY, "seriesId": SERIES}
    assert (
        invalid_request(body) == "missing fields of the DICOM store: locationsId, datasetsId, dicomStoresId"
    )


@pytest.mark.parametrize("field", ["projectsId", "locationsId", "datasetsId", "dicomStoresId"])
def test_store_field_that_is_not_a_string(field: str) -> None:
    assert invalid_request({"action": "search", **SEPARATE, field: 7}) == f"{field} must be a string"


@pytest.mark.parametrize("field", ["studiesId", "seriesId"])
@pytest.mark.parametrize("value", [7, 1.2, None, ["1.2"]])
def test_uid_field_that_is_not_a_string(field: str, value: object) -> None:
    assert invalid_request({"action": "search", **SEPARATE, field: value}) == f"{field} must be a string"


BAD_UIDS = [
    "1.2.abc",
    "1.2.840.10008.5.1.4.1.1.2x",
    "1." + "2" * 63,  # 65 characters
    "1..2",
    ".1.2",
    "1.2.",
    "",
    ".",
    "1.2 ",
    "1.2\n",
    "1.-2",
    "+1.2",
    "1,2",
    "\u0661.\u0662",  # Arabic-Indic digits
    "\uff11.\uff12",  # full-width digits
]


@pytest.mark.parametrize("uid", BAD_UIDS)
@pytest.mark.parametrize("field", ["studiesId", "seriesId"])
def test_bad_uid_in_a_separate_field(uid: str, field: str) -> None:
    message = invalid_request({"action": "search", **SEPARATE, field: uid})
    assert message == f"{field} is not a DICOM UID (digits and dots, at most 64 characters)"


@pytest.mark.parametrize("uid", BAD_UIDS)
def test_bad_uid_in_a_series_path(uid: str) -> None:
    study_message = invalid_request(search(series=f"{STORE}/dicomWeb/studies/{uid}/series/{SERIES}"))
    series_message = invalid_request(search(series=f"studies/{STUDY}/series/{uid}"))

    assert study_message.startswith("StudyInstanceUID is not a DICOM UID")
    assert series_message.startswith("SeriesInstanceUID is not a DICOM UID")


@pytest.mark.parametrize("uid", ["1.2.x", "1..2", "1.2%2F3", "..", "1.2?x=1", ""])
def test_bad_sop_uid_in_a_notification(uid: str) -> None:
    error = rejected(f"{SERIES_PATH}/instances/{uid}")

    assert error.code is Code.INVALID_REQUEST
    assert error.message == "SOPInstanceUID is not a DICOM UID (digits and dots, at most 64 characters)"


def test_sop_uid_with_a_slash_in_a_notification() -> None:
    error = rejected(f"{SERIES_PATH}/instances/../../x")

    assert error.code is Code.INVALID_REQUEST
    assert error.message == "an instance path must end with studies/{study}/series/{series}/instances/{sop}"


@pytest.mark.parametrize(
    "value",
    [7, "1.2.x", "1..2", "1." + "2" * 63],
    ids=["not-a-string", "letters", "empty-component", "too-long"],
)
def test_bad_instance_field(value: object) -> None:
    message = invalid_request({"action": "retrieve", "series": SERIES_PATH, "instance": value})
    assert message.startswith("instance ")


@pytest.mark.parametrize("action", ["search", "delete", "archive"])
def test_instance_field_only_with_retrieve(action: str) -> None:
    message = invalid_request({"action": action, "series": SERIES_PATH, "instance": SOP})
    assert message == "instance is only accepted with action retrieve"


# Path tricks, injected into each component in turn. Each must be refused before it can reach a URL.
TRICKS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    "..%2f",
    "a/b",
    "../x",
    "a?b",
    "a#b",
    "a b",
    "a\nb",
    "a\tb",
    "a\x00b",
    "a\\b",
    "é",
    "\uff41\uff42\uff43",  # full-width letters
    "a;b",
]
COMPONENT_FIELDS = {
    "projectsId": PROJECT,
    "locationsId": LOCATION,
    "datasetsId": DATASET,
    "dicomStoresId": STORE_ID,
    "studiesId": STUDY,
    "seriesId": SERIES,
}


def _path(components: dict[str, str]) -> str:
    c = components
    return (
        f"projects/{c['projectsId']}/locations/{c['locationsId']}/datasets/{c['datasetsId']}"
        f"/dicomStores/{c['dicomStoresId']}/dicomWeb/studies/{c['studiesId']}/series/{c['seriesId']}"
    )


@pytest.mark.parametrize("trick", TRICKS)
@pytest.mark.parametrize("field", list(COMPONENT_FIELDS))
def test_path_tricks_in_separate_fields(field: str, trick: str) -> None:
    values = [trick]
    if not (field in ("datasetsId", "dicomStoresId") and set(trick) == {"."}):
        # dots inside these ids are allowed: only a whole `.` or `..` segment means something in a URL
        values += [f"{COMPONENT_FIELDS[field]}{trick}", f"{trick}{COMPONENT_FIELDS[field]}"]
    for value in values:
        message = invalid_request({"action": "search", **SEPARATE, field: value})
        assert message.startswith(f"{field} "), (value, message)


@pytest.mark.parametrize("trick", TRICKS)
@pytest.mark.parametrize("field", list(COMPONENT_FIELDS))
def test_path_tricks_in_each_component_of_a_series_path_or_notification(field: str, trick: str) -> None:
    series_path = _path({**COMPONENT_FIELDS, field: trick})

    series_error = rejected(search(series=series_path))
    notification_error = rejected(f"{series_path}/instances/{SOP}")

    assert series_error.code is Code.INVALID_REQUEST
    assert notification_error.code is Code.INVALID_REQUEST


def test_dots_inside_dataset_and_store_ids_are_allowed() -> None:
    request = parse({"action": "search", **SEPARATE, "datasetsId": "my.data-set_1", "dicomStoresId": "s.1"})

    assert request.series.store == DicomStore(PROJECT, LOCATION, "my.data-set_1", "s.1")


@pytest.mark.parametrize(
    ("series", "named"),
    [
        (
            f"projects/{PROJECT}/locations/{LOCATION}/dataset/{DATASET}/dicomStores/{STORE_ID}"
            f"/dicomWeb/studies/{STUDY}/series/{SERIES}",
            "a DICOM store is projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}",
        ),
        (
            f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomstores/{STORE_ID}"
            f"/dicomWeb/studies/{STUDY}/series/{SERIES}",
            "a DICOM store is projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}",
        ),
        (
            f"projects/{PROJECT}/regions/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE_ID}"
            f"/dicomWeb/studies/{STUDY}/series/{SERIES}",
            "a DICOM store is projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}",
        ),
        (
            f"{STORE}/dicomweb/studies/{STUDY}/series/{SERIES}",
            "a series path must contain .../dicomStores/{s}/dicomWeb/studies/...",
        ),
        (
            f"{STORE}/studies/{STUDY}/series/{SERIES}",
            "a series path must contain .../dicomStores/{s}/dicomWeb/studies/...",
        ),
        (
            f"{STORE}/dicomWeb/study/{STUDY}/series/{SERIES}",
            "a series path must end with studies/{study}/series/{series}",
        ),
        (
            f"{STORE}/dicomWeb/studies/{STUDY}/Series/{SERIES}",
            "a series path must end with studies/{study}/series/{series}",
        ),
        (f"{STORE}/dicomWeb/studies/{STUDY}", "a series path must end with studies/{study}/series/{series}"),
        (
            f"{SERIES_PATH}/instances/{SOP}",
            "a series path must end with studies/{study}/series/{series}",
        ),
        (f"{SERIES_PATH}/", "a series path must end with studies/{study}/series/{series}"),
        (
            f"dicomWeb/studies/{STUDY}/series/{SERIES}",
            "a series path must end with studies/{study}/series/{series}",
        ),
        ("", "a series path must end with studies/{study}/series/{series}"),
    ],
)
def test_healthcare_path_with_wrong_keywords(series: str, named: str) -> None:
    assert invalid_request(search(series=series)) == named


@pytest.mark.parametrize("series", [None, 7, ["studies", STUDY]])
def test_series_that_is_not_a_string(series: object) -> None:
    assert invalid_request(search(series=series)) == "a series path must be a string"


def test_notification_of_the_wrong_shape() -> None:
    error = rejected(f"{SERIES_PATH}/instances/{SOP}/frames/1")

    assert error.code is Code.INVALID_REQUEST
    assert error.message == "an instance path must end with studies/{study}/series/{series}/instances/{sop}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("projectsId", "My-Project"),
        ("projectsId", "p"),
        ("locationsId", "US-CENTRAL1"),
        ("locationsId", "1region"),
        ("datasetsId", "x" * 257),
        ("dicomStoresId", ""),
    ],
)
def test_store_ids_outside_their_alphabet(field: str, value: str) -> None:
    message = invalid_request({"action": "search", **SEPARATE, field: value})
    assert message == f"{field} has characters outside those allowed for it"


def test_operation_from_another_dataset() -> None:
    other = f"projects/{PROJECT}/locations/{LOCATION}/datasets/other-dataset/operations/123"
    body = {"action": "delete", "series": SERIES_PATH, "operation": other}
    assert invalid_request(body) == "operation must belong to the series' dataset"


@pytest.mark.parametrize(
    "operation",
    [
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}-2/operations/123",
        f"projects/{PROJECT}/locations/europe-west4/datasets/{DATASET}/operations/123",
        f"projects/other-project/locations/{LOCATION}/datasets/{DATASET}/operations/123",
    ],
)
def test_operation_of_a_similarly_named_dataset(operation: str) -> None:
    body = {"action": "archive", "series": SERIES_PATH, "operation": operation}
    assert invalid_request(body) == "operation must belong to the series' dataset"


def test_operation_with_a_dicomweb_series() -> None:
    body = {"action": "delete", "series": DICOMWEB_SERIES_PATH, "operation": OPERATION}
    assert invalid_request(body) == "operation must belong to the series' dataset"


@pytest.mark.parametrize(
    "operation",
    [
        7,
        "operations/123",
        f"{OPERATION}/../../x",
        f"{OPERATION}?alt=media",
        f"{OPERATION}#x",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations/",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/operations/1 2",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/{STORE_ID}",
    ],
)
def test_malformed_operation(operation: object) -> None:
    body = {"action": "delete", "series": SERIES_PATH, "operation": operation}
    assert (
        invalid_request(body) == "operation must be projects/{p}/locations/{l}/datasets/{d}/operations/{id}"
    )


@pytest.mark.parametrize("action", ["search", "retrieve"])
def test_operation_only_with_delete_or_archive(action: str) -> None:
    body = {"action": action, "series": SERIES_PATH, "operation": OPERATION}
    assert (
        invalid_request(body) == "operation is only accepted with actions delete, archive, restore and tier"
    )


@pytest.mark.parametrize("continuation", [-1, 10_001, "1", 1.5, True, None])
def test_bad_continuation(continuation: object) -> None:
    assert invalid_request(search(continuation=continuation)) == (
        "continuation must be an integer between 0 and 10000"
    )


@pytest.mark.parametrize(
    "request_id", ["has space", "a/b", "a?b", "x" * 129, "", "naïve", "a\nb", 42, ["id"], True]
)
def test_request_id_with_bad_characters(request_id: object) -> None:
    assert invalid_request(search(requestId=request_id)) == (
        "requestId must be 1 to 128 characters of letters, digits and _.:-"
    )


@pytest.mark.parametrize(
    ("destination", "named"),
    [
        (7, "destination must be a gs:// URL string"),
        ("", "destination must be a gs://bucket/prefix URL"),
        ("s3://my-bucket/x", "destination must be a gs://bucket/prefix URL"),
        ("https://storage.googleapis.com/my-bucket", "destination must be a gs://bucket/prefix URL"),
        ("gs://My-Bucket/x", "destination bucket is not a valid Cloud Storage bucket name"),
        ("gs://my-bucket/a/../b", "destination prefix components may hold letters, digits and _.=+@,- only"),
    ],
)
def test_bad_destination(destination: object, named: str) -> None:
    body = {"action": "retrieve", "series": SERIES_PATH, "destination": destination}
    assert invalid_request(body).startswith(named)


# -- as_json: the continuation message asks for the same request ---------------------------------


ROUND_TRIPS = [
    SeriesRequest(Action.SEARCH, HEALTHCARE_SERIES, "req-1"),
    SeriesRequest(Action.SEARCH, SeriesRef(None, STUDY, SERIES), "req-2", continuation=4),
    SeriesRequest(
        Action.RETRIEVE,
        HEALTHCARE_SERIES,
        "req-3",
        destination=GcsLocation("my-bucket", "a/b"),
        options=RetrieveOptions("1.2.840.10008.1.2.4.50", True, Mode.SERIES),
    ),
    SeriesRequest(Action.RETRIEVE, HEALTHCARE_SERIES, "req-4", instance_uid=SOP, continuation=1),
    SeriesRequest(
        Action.RETRIEVE, SeriesRef(None, STUDY, SERIES), "req-5", destination=GcsLocation("b-1", "")
    ),
    SeriesRequest(Action.ARCHIVE, HEALTHCARE_SERIES, "req-6", options=RetrieveOptions(mode=Mode.SERIES)),
    SeriesRequest(Action.ARCHIVE, HEALTHCARE_SERIES, "req-7", operation=OPERATION, continuation=9),
    SeriesRequest(Action.DELETE, HEALTHCARE_SERIES, "req-8", operation=OPERATION, continuation=10_000),
]


@pytest.mark.parametrize("request_", ROUND_TRIPS, ids=lambda r: r.request_id)
def test_signed_as_json_round_trips_through_parse_request(request_: SeriesRequest) -> None:
    data = json.dumps(signed(request_.as_json())).encode("utf-8")

    assert parse_request(message(data, message_id="unrelated-id"), KEYS) == request_


def test_as_json_carries_only_the_options_of_the_action() -> None:
    assert "options" not in ROUND_TRIPS[0].as_json()
    assert ROUND_TRIPS[5].as_json()["options"] == {"mode": "series"}
    assert ROUND_TRIPS[2].as_json()["options"] == {
        "transferSyntax": "1.2.840.10008.1.2.4.50",
        "includeMetadata": True,
        "mode": "series",
    }


# -- ALLOWED_DICOM_STORES: whole path components -------------------------------------------------

ANY_STORE = "projects/*/locations/*/datasets/*/dicomStores/*"


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        ((), True),
        ((STORE,), True),
        ((ANY_STORE,), True),
        ((f"projects/{PROJECT}/locations/*/datasets/{DATASET}/dicomStores/*",), True),
        (("projects/other-project/locations/*/datasets/*/dicomStores/*", STORE), True),
        (("projects/other-project/locations/*/datasets/*/dicomStores/*",), False),
        ((f"{STORE}-2",), False),
        ((STORE.upper(),), False),
        (("dicomweb",), False),
    ],
)
def test_store_allowed_component_by_component(patterns: tuple[str, ...], allowed: bool) -> None:
    assert store_allowed(HEALTHCARE_SERIES.store, patterns) is allowed


@pytest.mark.parametrize(
    "pattern",
    [
        f"projects/{PROJECT}/*",  # `*` never crosses a `/`
        "projects/*",
        "*",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/my*",  # not a glob
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/my-store/*",
        f"projects/{PROJECT}/locations/{LOCATION}/datasets/*",
    ],
)
def test_a_star_stands_for_exactly_one_whole_component(pattern: str) -> None:
    assert not store_allowed(HEALTHCARE_SERIES.store, (pattern,))


def test_a_star_inside_an_id_matches_only_itself() -> None:
    evil = DicomStore(PROJECT, LOCATION, DATASET, "s-evil")

    assert not store_allowed(
        evil, (f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/s*",)
    )
    assert store_allowed(evil, (f"projects/{PROJECT}/locations/{LOCATION}/datasets/{DATASET}/dicomStores/*",))


def test_dicomweb_series_is_matched_as_dicomweb() -> None:
    assert store_allowed(None, ("dicomweb",))
    assert not store_allowed(None, (ANY_STORE,))
    assert not store_allowed(None, ("projects/*",))
