"""The hostile message corpus of test_abuse.py: malformed, mistyped and path-tricking requests.

Every entry is one Pub/Sub message that must end with exactly one failed completion event carrying the
entry's error code and an error message that contains `says`. Entries are built against a :class:`Target`
(the allowed store and bucket of the test deployment, another bucket, and a canary server's host:port that
must never be contacted); :data:`NAMES` lists them for parametrization, built against a placeholder target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

INVALID_MESSAGE = "invalid_message"
INVALID_REQUEST = "invalid_request"
DESTINATION_NOT_ALLOWED = "destination_not_allowed"
STORE_NOT_ALLOWED = "store_not_allowed"
DELETE_DISABLED = "delete_disabled"
SERIES_NOT_FOUND = "series_not_found"
DELETE_FAILED = "delete_failed"

MAIN = "main"  # DELETE_ENABLED=true, ALLOWED_BUCKETS and ALLOWED_DICOM_STORES set
NO_DELETE = "no_delete"  # the same without DELETE_ENABLED


@dataclass(frozen=True)
class Target:
    """What the corpus aims at: a real series in the allowed store, the allowed bucket, and a canary."""

    project: str
    location: str
    dataset: str
    store: str
    study: str
    series: str
    bucket: str
    other_bucket: str
    canary: str  # host:port of a server that must never receive a request

    @property
    def store_name(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"
            f"/dicomStores/{self.store}"
        )

    @property
    def dataset_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/datasets/{self.dataset}"

    def path(self, **parts: str) -> str:
        """The series path, with any of project/location/dataset/store/web/study/series replaced."""
        p = {
            "project": self.project,
            "location": self.location,
            "dataset": self.dataset,
            "store": self.store,
            "web": "dicomWeb",
            "study": self.study,
            "series": self.series,
            **parts,
        }
        return (
            f"projects/{p['project']}/locations/{p['location']}/datasets/{p['dataset']}"
            f"/dicomStores/{p['store']}/{p['web']}/studies/{p['study']}/series/{p['series']}"
        )

    def fields(self, **overrides: Any) -> dict[str, Any]:
        """The separate-fields form of the series (the original API request's path parameters)."""
        body: dict[str, Any] = {
            "projectsId": self.project,
            "locationsId": self.location,
            "datasetsId": self.dataset,
            "dicomStoresId": self.store,
            "studiesId": self.study,
            "seriesId": self.series,
        }
        body.update(overrides)
        return body


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    codes: tuple[str, ...]  # the accepted error code(s); one, except where noted
    says: str  # the error message must contain this (case-insensitive)
    attributes: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None  # the valid requestId the message carries, if any
    deployment: str = MAIN


def _request_id(name: str) -> str:
    return f"abuse-{name}"


def _json(
    name: str,
    body: dict[str, Any],
    code: str | tuple[str, ...],
    says: str,
    *,
    attributes: dict[str, str] | None = None,
    deployment: str = MAIN,
    with_request_id: bool = True,
) -> Hostile:
    """A JSON-object message; it carries a valid requestId unless the entry is about the requestId."""
    request_id = None
    if with_request_id and "requestId" not in body:
        request_id = _request_id(name)
        body = {**body, "requestId": request_id}
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    codes = code if isinstance(code, tuple) else (code,)
    return Hostile(name, data, codes, says, dict(attributes or {}), request_id, deployment)


def _raw(name: str, data: bytes | str, code: str, says: str, **attributes: str) -> Hostile:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return Hostile(name, payload, (code,), says, dict(attributes))


LOOKALIKES = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "1": "\uff11"}


def lookalike(value: str) -> str:
    """`value` with its first character that has a Unicode look-alike replaced by it."""
    for index, char in enumerate(value):
        if char in LOOKALIKES:
            return value[:index] + LOOKALIKES[char] + value[index + 1 :]
    raise ValueError(f"no look-alike for {value!r}")


def path_tricks(value: str, canary: str) -> dict[str, str]:
    """The path tricks tried in every component: traversal, encoded traversal, separators, whitespace,
    control characters and Unicode look-alikes."""
    return {
        "dot-dot": "..",
        "percent-dot-dot": "%2e%2e",
        "slash": f"{value}/../{value}",
        "query": f"{value}?alt=media",
        "fragment": f"{value}#x",
        "space": f"{value} x",
        "tab": f"{value}\tx",
        "newline": f"{value}\r\nHost: {canary}",
        "nul": f"{value}\x00",
        "lookalike": lookalike(value),
    }


def corpus(t: Target) -> list[Hostile]:
    series = t.path()
    canary = t.canary
    retrieve = {"action": "retrieve", "series": series}
    entries: list[Hostile] = []
    add = entries.append

    # -- not a JSON object, or not UTF-8, or too large -----------------------------------------------
    add(_raw("invalid-json", '{"action": "retrieve", "series": ', INVALID_MESSAGE, "not JSON"))
    add(_raw("invalid-utf8", b'{"action": "retrieve", "series": "\xff\xfe"}', INVALID_MESSAGE, "UTF-8"))
    add(
        _raw(
            "overlong-utf8-dots",
            b'{"action":"retrieve","series":"\xc0\xae\xc0\xae"}',
            INVALID_MESSAGE,
            "UTF-8",
        )
    )
    add(_raw("utf16-json", json.dumps(retrieve).encode("utf-16"), INVALID_MESSAGE, "UTF-8"))
    add(_raw("json-array", json.dumps([retrieve]), INVALID_MESSAGE, "JSON object"))
    add(_raw("json-string", '"retrieve"', INVALID_MESSAGE, "JSON object"))
    add(_raw("json-number", "42", INVALID_MESSAGE, "JSON object"))
    add(_raw("json-null", "null", INVALID_MESSAGE, "JSON object"))
    add(_raw("json-true", "true", INVALID_MESSAGE, "JSON object"))
    add(_raw("json-infinity", "1e999", INVALID_MESSAGE, "JSON object"))
    add(_raw("huge-integer", "9" * 5000, INVALID_MESSAGE, "JSON"))
    add(_raw("whitespace-only", " \t\r\n ", INVALID_MESSAGE, "not JSON"))
    add(_raw("utf8-bom", b"\xef\xbb\xbf" + json.dumps(retrieve).encode(), INVALID_MESSAGE, "not JSON"))
    add(_raw("nested-arrays", "[" * 20_000 + "]" * 20_000, INVALID_MESSAGE, "JSON"))
    add(_raw("nested-objects", '{"a":' * 10_000 + "1" + "}" * 10_000, INVALID_MESSAGE, "JSON"))
    oversized = {**retrieve, "requestId": "big", "padding": "A" * (64 * 1024)}
    add(_raw("over-64-kib", json.dumps(oversized), INVALID_MESSAGE, "exceeds 65536 bytes"))
    add(
        _raw(
            "notification-via-canary",
            f"http://{canary}/{series}/instances/1.2.3",
            INVALID_MESSAGE,
            "not JSON",
        )
    )

    # -- wrong types for each field --------------------------------------------------------------------
    add(_json("empty-object", {}, INVALID_REQUEST, "action is missing"))
    add(_json("action-null", {"action": None, "series": series}, INVALID_REQUEST, "action is missing"))
    add(_json("action-number", {"action": 7, "series": series}, INVALID_REQUEST, "action must be a string"))
    add(_json("action-list", {"action": ["retrieve"], "series": series}, INVALID_REQUEST, "action must be"))
    add(_raw("action-nan", f'{{"action": NaN, "series": "{series}"}}', INVALID_REQUEST, "action must be"))
    add(_json("series-number", {"action": "retrieve", "series": 1.2}, INVALID_REQUEST, "must be a string"))
    add(_json("series-null", {"action": "retrieve", "series": None}, INVALID_REQUEST, "must be a string"))
    add(
        _json(
            "series-object",
            {"action": "retrieve", "series": {"studies": t.study}},
            INVALID_REQUEST,
            "series path must be a string",
        )
    )
    add(_json("destination-number", {**retrieve, "destination": 5}, INVALID_REQUEST, "destination must be"))
    add(
        _json(
            "destination-list", {**retrieve, "destination": [f"gs://{t.bucket}/x"]}, INVALID_REQUEST, "gs://"
        )
    )
    add(_json("request-id-number", {**retrieve, "requestId": 12345}, INVALID_REQUEST, "requestId"))
    add(_json("request-id-object", {**retrieve, "requestId": {"id": "x"}}, INVALID_REQUEST, "requestId"))
    add(
        _json("options-string", {**retrieve, "options": "fast"}, INVALID_REQUEST, "options must be an object")
    )
    add(
        _json("options-list", {**retrieve, "options": ["mode"]}, INVALID_REQUEST, "options must be an object")
    )
    add(
        _json(
            "include-metadata-string",
            {**retrieve, "options": {"includeMetadata": "yes"}},
            INVALID_REQUEST,
            "includeMetadata",
        )
    )
    add(_json("mode-list", {**retrieve, "options": {"mode": ["series"]}}, INVALID_REQUEST, "options.mode"))
    add(
        _json(
            "mode-unknown", {**retrieve, "options": {"mode": "everything"}}, INVALID_REQUEST, "options.mode"
        )
    )
    add(
        _json(
            "transfer-syntax-number",
            {**retrieve, "options": {"transferSyntax": 1.2}},
            INVALID_REQUEST,
            "transferSyntax",
        )
    )
    add(
        _json(
            "studies-id-number",
            {"action": "retrieve", **t.fields(studiesId=1.2)},
            INVALID_REQUEST,
            "studiesId must be a string",
        )
    )
    add(
        _json(
            "projects-id-list",
            {"action": "retrieve", **t.fields(projectsId=[t.project])},
            INVALID_REQUEST,
            "projectsId must be a string",
        )
    )
    add(
        _json(
            "store-fields-incomplete",
            {"action": "retrieve", "projectsId": t.project, "studiesId": t.study, "seriesId": t.series},
            INVALID_REQUEST,
            "missing fields of the DICOM store",
        )
    )
    add(_json("continuation-string", {**retrieve, "continuation": "1"}, INVALID_REQUEST, "continuation"))
    add(_json("continuation-bool", {**retrieve, "continuation": True}, INVALID_REQUEST, "continuation"))
    add(_json("continuation-negative", {**retrieve, "continuation": -1}, INVALID_REQUEST, "continuation"))
    add(_json("continuation-too-big", {**retrieve, "continuation": 2**64}, INVALID_REQUEST, "continuation"))
    add(
        _raw(
            "continuation-infinite",
            f'{{"action": "retrieve", "series": "{series}", "continuation": 1e999}}',
            INVALID_REQUEST,
            "continuation",
        )
    )
    add(_json("instance-number", {**retrieve, "instance": 5}, INVALID_REQUEST, "instance must be a string"))
    add(
        _json(
            "operation-number",
            {"action": "delete", "series": series, "operation": 5},
            INVALID_REQUEST,
            "operation must be",
        )
    )

    # -- unknown action, fields, options; fields that do not go together ------------------------------
    add(_json("unknown-action", {"action": "purge", "series": series}, INVALID_REQUEST, "unknown action"))
    add(_json("action-upper-case", {"action": "DELETE", "series": series}, INVALID_REQUEST, "unknown action"))
    add(
        _json(
            "unknown-action-attribute",
            {"series": series},
            INVALID_REQUEST,
            "unknown action",
            attributes={"action": "export"},
        )
    )
    add(
        _json(
            "unknown-field-callback",
            {**retrieve, "callbackUrl": f"http://{canary}/hook"},
            INVALID_REQUEST,
            "unknown fields: 1; accepted fields:",
        )
    )
    add(
        _json(
            "unknown-field-proto",
            {**retrieve, "__proto__": {"admin": True}},
            INVALID_REQUEST,
            "unknown fields: 1; accepted fields:",
        )
    )
    add(
        _json(
            "unknown-field-dicomweb-url",
            {**retrieve, "dicomwebUrl": f"http://{canary}/dicomWeb"},
            INVALID_REQUEST,
            "unknown fields: 1; accepted fields:",
        )
    )
    add(
        _json(
            "unknown-option-webhook",
            {**retrieve, "options": {"webhook": f"http://{canary}/"}},
            INVALID_REQUEST,
            "unknown options for retrieve: 1; accepted:",
        )
    )
    add(
        _json(
            "search-with-mode",
            {"action": "search", "series": series, "options": {"mode": "series"}},
            INVALID_REQUEST,
            "unknown options for search: 1; accepted:",
        )
    )
    add(
        _json(
            "archive-transcoded",
            {"action": "archive", "series": series, "options": {"transferSyntax": "1.2.840.10008.1.2"}},
            INVALID_REQUEST,
            "unknown options for archive: 1; accepted:",
        )
    )
    add(
        _json(
            "delete-with-options",
            {"action": "delete", "series": series, "options": {"includeMetadata": True}},
            INVALID_REQUEST,
            "unknown options for delete: 1; accepted:",
        )
    )
    add(
        _json(
            "transfer-syntax-header-injection",
            {**retrieve, "options": {"transferSyntax": "1.2.840.10008.1.2.1\r\nX-Evil: 1"}},
            INVALID_REQUEST,
            "transferSyntax",
        )
    )
    add(
        _json(
            "transfer-syntax-accept-tricks",
            {**retrieve, "options": {"transferSyntax": '*; type="application/json", */*'}},
            INVALID_REQUEST,
            "transferSyntax",
        )
    )
    add(
        _json(
            "instance-with-archive",
            {"action": "archive", "series": series, "instance": "1.2.3"},
            INVALID_REQUEST,
            "instance is only accepted with action retrieve",
        )
    )
    add(
        _json(
            "operation-with-retrieve",
            {**retrieve, "operation": f"{t.dataset_name}/operations/1"},
            INVALID_REQUEST,
            "operation is only accepted with actions delete, archive, restore and tier",
        )
    )
    add(
        _json(
            "series-and-fields",
            {**retrieve, "studiesId": t.study},
            INVALID_REQUEST,
            "give either series or the separate fields",
        )
    )

    # -- bad UIDs --------------------------------------------------------------------------------------
    bad_uids = {
        "uid-letters": "1.2.3a",
        "uid-65-chars": "1." + "2" * 63,
        "uid-empty-component": "1..2",
        "uid-leading-dot": ".1.2",
        "uid-trailing-dot": "1.2.",
        "uid-empty": "",
        "uid-fullwidth-digits": "\uff11.\uff12",
        "uid-arabic-indic-digits": "\u0661.\u0662",
        "uid-trailing-newline": "1.2\n",
        "uid-negative": "-1.2",
    }
    for name, uid in bad_uids.items():
        add(
            _json(
                name,
                {"action": "retrieve", **t.fields(seriesId=uid)},
                INVALID_REQUEST,
                "seriesId is not a DICOM UID",
            )
        )
    add(
        _json(
            "uid-65-chars-in-path",
            {"action": "retrieve", "series": t.path(study="1." + "9" * 63)},
            INVALID_REQUEST,
            "StudyInstanceUID is not a DICOM UID",
        )
    )
    add(
        _json(
            "instance-uid-letters",
            {**retrieve, "instance": "1.2.x"},
            INVALID_REQUEST,
            "instance is not a DICOM UID",
        )
    )

    # -- path tricks, in every component of the series path, of the separate fields and of a notification
    path_labels = {
        "project": "projectsId",
        "location": "locationsId",
        "dataset": "datasetsId",
        "store": "dicomStoresId",
        "study": "StudyInstanceUID",
        "series": "SeriesInstanceUID",
    }
    field_names = {
        "project": "projectsId",
        "location": "locationsId",
        "dataset": "datasetsId",
        "store": "dicomStoresId",
        "study": "studiesId",
        "series": "seriesId",
    }
    values = {
        "project": t.project,
        "location": t.location,
        "dataset": t.dataset,
        "store": t.store,
        "study": t.study,
        "series": t.series,
    }
    for component, value in values.items():
        for trick, tricked in path_tricks(value, canary).items():
            says = "series path must" if trick == "slash" else path_labels[component]
            add(
                _json(
                    f"path-{component}-{trick}",
                    {"action": "retrieve", "series": t.path(**{component: tricked})},
                    INVALID_REQUEST,
                    says,
                )
            )
            add(
                _json(
                    f"fields-{component}-{trick}",
                    {"action": "retrieve", **t.fields(**{field_names[component]: tricked})},
                    INVALID_REQUEST,
                    field_names[component],
                )
            )
    for trick, tricked in path_tricks("1.2.3", canary).items():
        says = "instance path must" if trick == "slash" else "SOPInstanceUID"
        add(_raw(f"notification-instance-{trick}", f"{series}/instances/{tricked}", INVALID_REQUEST, says))
        add(
            _json(
                f"instance-field-{trick}",
                {**retrieve, "instance": tricked},
                INVALID_REQUEST,
                "instance is not a DICOM UID",
            )
        )

    def special(name: str, says: str, **parts: str) -> None:
        add(_json(name, {"action": "retrieve", "series": t.path(**parts)}, INVALID_REQUEST, says))

    special("path-project-at-canary", "projectsId", project=f"{t.project}@{canary}")
    special("path-store-division-slash", "dicomStoresId", store=f"{t.store}\u2215..\u2215x")
    special("path-store-fullwidth-solidus", "dicomStoresId", store=f"{t.store}\uff0f..")
    special("path-store-percent-slash", "dicomStoresId", store=f"{t.store}%2F..%2Fother")
    special("path-dicomweb-cyrillic-e", "dicomStores/{s}/dicomWeb", web="dicomW\u0435b")
    special("path-dicomweb-dot-dot", "dicomStores/{s}/dicomWeb", web="..")
    special("path-dicomweb-lower-case", "dicomStores/{s}/dicomWeb", web="dicomweb")
    special("path-series-includefield", "SeriesInstanceUID", series=f"{t.series}?includefield=all")
    for name, path, says in [
        ("series-trailing-slash", series + "/", "must end with studies/{study}/series/{series}"),
        ("series-double-slash", series.replace("/locations/", "//locations/"), "series path must"),
        ("series-instance-level", series + "/instances/1.2", "must end with studies/{study}/series/{series}"),
        (
            "series-study-level",
            series.rsplit("/series/", 1)[0],
            "must end with studies/{study}/series/{series}",
        ),
    ]:
        add(_json(name, {"action": "retrieve", "series": path}, INVALID_REQUEST, says))
    add(
        _json(
            "fields-project-at-canary",
            {"action": "retrieve", **t.fields(projectsId=f"x@{canary}")},
            INVALID_REQUEST,
            "projectsId",
        )
    )

    # -- a series path naming another host -------------------------------------------------------------
    for name, path in {
        "series-http-canary": f"http://{canary}/v1/{series}",
        "series-scheme-relative-canary": f"//{canary}/v1/{series}",
        "series-userinfo-canary": f"https://{t.project}@{canary}/v1/{series}",
        "series-backslash-canary": f"\\\\{canary}\\v1\\{series}",
    }.items():
        add(_json(name, {"action": "retrieve", "series": path}, INVALID_REQUEST, "series path must"))
    add(
        _json(
            "series-host-in-domain-project",
            {"action": "retrieve", "series": t.path(project="127.0.0.1:canary")},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )

    # -- operations: another dataset, another host, one that does not exist -----------------------------
    add(
        _json(
            "operation-other-dataset",
            {
                "action": "delete",
                "series": series,
                "operation": f"projects/{t.project}/locations/{t.location}/datasets/other/operations/1",
            },
            INVALID_REQUEST,
            "operation must belong to the series' dataset",
        )
    )
    add(
        _json(
            "operation-other-project",
            {
                "action": "archive",
                "series": series,
                "operation": t.dataset_name.replace(t.project, "evil-project") + "/operations/1",
            },
            INVALID_REQUEST,
            "operation must belong to the series' dataset",
        )
    )
    add(
        _json(
            "operation-canary-url",
            {
                "action": "delete",
                "series": series,
                "operation": f"http://{canary}/v1/{t.dataset_name}/operations/1",
            },
            INVALID_REQUEST,
            "operation must be projects/",
        )
    )
    add(
        _json(
            "operation-traversal",
            {"action": "delete", "series": series, "operation": f"{t.dataset_name}/operations/1/../../../x"},
            INVALID_REQUEST,
            "operation must be projects/",
        )
    )
    add(
        _json(
            "operation-query",
            {"action": "delete", "series": series, "operation": f"{t.dataset_name}/operations/1?alt=media"},
            INVALID_REQUEST,
            "operation must be projects/",
        )
    )
    # An operation name of the right dataset that the server does not know (a stale or forged follow-up):
    # nothing was deleted by this request, and it must still end with a failed event.
    add(
        _json(
            "operation-unknown",
            {"action": "delete", "series": series, "operation": f"{t.dataset_name}/operations/987654321"},
            (DELETE_FAILED, INVALID_REQUEST),
            "operation",
        )
    )

    # -- destinations that are not gs:// URLs, or leave the allowed bucket --------------------------------
    for name, destination, code, says in [
        ("destination-http", f"http://{canary}/{t.bucket}/x", INVALID_REQUEST, "gs://bucket/prefix"),
        ("destination-s3", f"s3://{t.bucket}/x", INVALID_REQUEST, "gs://bucket/prefix"),
        ("destination-upper-scheme", f"GS://{t.bucket}/x", INVALID_REQUEST, "gs://bucket/prefix"),
        ("destination-leading-space", f" gs://{t.bucket}/x", INVALID_REQUEST, "gs://bucket/prefix"),
        ("destination-empty", "", INVALID_REQUEST, "gs://bucket/prefix"),
        ("destination-canary-bucket", f"gs://{canary}/x", INVALID_REQUEST, "bucket"),
        ("destination-userinfo", f"gs://{t.bucket}@{canary}/", INVALID_REQUEST, "bucket"),
        ("destination-bucket-nul", f"gs://{t.bucket}\x00/x", INVALID_REQUEST, "bucket"),
        ("destination-dot-dot", f"gs://{t.bucket}/../x", INVALID_REQUEST, "prefix"),
        ("destination-inner-dot-dot", f"gs://{t.bucket}/a/../../x", INVALID_REQUEST, "prefix"),
        ("destination-dot", f"gs://{t.bucket}/a/./b", INVALID_REQUEST, "prefix"),
        ("destination-empty-component", f"gs://{t.bucket}/a//b", INVALID_REQUEST, "prefix"),
        ("destination-percent-dot-dot", f"gs://{t.bucket}/%2e%2e/x", INVALID_REQUEST, "prefix"),
        ("destination-query", f"gs://{t.bucket}/a?b=1", INVALID_REQUEST, "prefix"),
        ("destination-fragment", f"gs://{t.bucket}/a#b", INVALID_REQUEST, "prefix"),
        ("destination-space", f"gs://{t.bucket}/a b", INVALID_REQUEST, "prefix"),
        ("destination-newline", f"gs://{t.bucket}/a\nb", INVALID_REQUEST, "prefix"),
        ("destination-other-bucket", f"gs://{t.other_bucket}/x", DESTINATION_NOT_ALLOWED, "ALLOWED_BUCKETS"),
        ("destination-bucket-suffix", f"gs://{t.bucket}-evil/x", DESTINATION_NOT_ALLOWED, "ALLOWED_BUCKETS"),
        ("destination-bucket-prefix", f"gs://x{t.bucket}/x", DESTINATION_NOT_ALLOWED, "ALLOWED_BUCKETS"),
    ]:
        add(_json(name, {**retrieve, "destination": destination}, code, says))
    add(
        _json(
            "archive-to-other-bucket",
            {"action": "archive", "series": series, "destination": f"gs://{t.other_bucket}/x"},
            DESTINATION_NOT_ALLOWED,
            "nothing was written",
        )
    )

    # -- a Healthcare path in another store ------------------------------------------------------------
    add(
        _json(
            "store-other-dataset",
            {"action": "retrieve", "series": t.path(dataset="other")},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )
    add(
        _json(
            "store-dataset-name-extended",
            {"action": "retrieve", "series": t.path(dataset=f"{t.dataset}x")},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )
    add(
        _json(
            "store-other-project-delete",
            {"action": "delete", "series": t.path(project="other-project")},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )
    add(
        _json(
            "store-other-dataset-archive-fields",
            {"action": "archive", **t.fields(datasetsId="other")},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )
    add(
        _json(
            "store-missing-dicomweb-relative",
            {"action": "retrieve", "series": f"studies/{t.study}/series/{t.series}"},
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        )
    )

    # -- requestIds with bad characters ----------------------------------------------------------------
    for name, request_id in {
        "request-id-space": "a b",
        "request-id-slash": "a/b",
        "request-id-traversal": "../../etc/passwd",
        "request-id-129-chars": "r" * 129,
        "request-id-empty": "",
        "request-id-newline": "ok\nX-Injected: 1",
        "request-id-nul": "ok\x00",
        "request-id-fullwidth": "\uff52\uff45\uff51",
        "request-id-percent": "id%2F..",
        "request-id-canary-url": f"http://{canary}/",
    }.items():
        add(_json(name, {**retrieve, "requestId": request_id}, INVALID_REQUEST, "requestId must be"))

    # -- store notifications (bare instance paths) with tricks ------------------------------------------
    for name, path, code, says in [
        ("notification-traversal", f"{series}/instances/1.2.3/../../../x", INVALID_REQUEST, "instance path"),
        ("notification-query", f"{series}/instances/1.2.3?alt=media", INVALID_REQUEST, "SOPInstanceUID"),
        ("notification-percent-dot-dot", f"{series}/instances/%2e%2e", INVALID_REQUEST, "SOPInstanceUID"),
        ("notification-nul", f"{series}/instances/1.2\x00", INVALID_REQUEST, "SOPInstanceUID"),
        ("notification-65-chars", f"{series}/instances/1.{'3' * 63}", INVALID_REQUEST, "SOPInstanceUID"),
        (
            "notification-project-dot-dot",
            t.path(project="..") + "/instances/1.2",
            INVALID_REQUEST,
            "projectsId",
        ),
        (
            "notification-store-query",
            t.path(store="s?x") + "/instances/1.2",
            INVALID_REQUEST,
            "dicomStoresId",
        ),
        (
            "notification-other-dataset",
            t.path(dataset="other") + "/instances/1.2",
            STORE_NOT_ALLOWED,
            "ALLOWED_DICOM_STORES",
        ),
        # Well-formed and in the allowed store, but there is no such instance: only the store is asked.
        (
            "notification-missing-instance",
            f"{series}/instances/1.2.3.4.5",
            SERIES_NOT_FOUND,
            "not in the source",
        ),
    ]:
        add(_raw(name, path, code, says))

    # -- delete and archive on a deployment without DELETE_ENABLED --------------------------------------
    for name, body, attributes in [
        ("no-delete-delete", {"action": "delete", "series": series}, {}),
        ("no-delete-archive", {"action": "archive", "series": series}, {}),
        ("no-delete-delete-by-attribute", {"series": series}, {"action": "delete"}),
        ("no-delete-archive-fields", {"action": "archive", **t.fields()}, {}),
        ("no-delete-other-store", {"action": "delete", "series": t.path(dataset="other")}, {}),
    ]:
        add(
            _json(
                name,
                body,
                DELETE_DISABLED,
                "DELETE_ENABLED=true",
                attributes=attributes,
                deployment=NO_DELETE,
            )
        )
    return entries


PLACEHOLDER = Target(
    project="local-project",
    location="local",
    dataset="abuse",
    store="corpus",
    study="1.2.3",
    series="1.2.3.4",
    bucket="bucket",
    other_bucket="other",
    canary="127.0.0.1:9",
)
NAMES = [entry.name for entry in corpus(PLACEHOLDER)]
assert len(NAMES) == len(set(NAMES)), "corpus entry names must be unique"
