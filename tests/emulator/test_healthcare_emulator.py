"""Conformance tests of the Healthcare API emulator against the documented facts of the real service.

Each test runs the emulator in-process on 127.0.0.1 with a temporary data dir and talks to it over HTTP.
"""

from __future__ import annotations

import gc
import http.client
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from pydicom import dcmread

from infra.local.healthcare_emulator import HealthcareEmulator, start_emulator

from .conftest import STORE, Env, parse_multipart, pydicom_file

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
MULTIPART_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
REAL_FILES = [  # distinct SOP Instance UIDs, many transfer syntaxes (uncompressed, deflated, RLE, JPEG, J2K)
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "ExplVR_BigEnd.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle.dcm",
    "JPEG-lossy.dcm",
    "image_dfl.dcm",
    "rtplan.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
]
ROOT_DIR = Path(__file__).resolve().parents[2]


def uids(path: Path) -> tuple[str, str, str]:
    ds = dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def value(obj: dict[str, dict[str, list[object]]], tag: str) -> object:
    return obj[tag]["Value"][0]


def big_json(resp: requests.Response) -> list[dict[str, Any]]:
    """Parse a large QIDO answer without the cyclic GC, which makes 50,000 small dicts take seconds."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        result: list[dict[str, Any]] = json.loads(resp.content)
        return result
    finally:
        if was_enabled:
            gc.enable()


def wait_done(env: Env, name: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll an operation as a client would, until done (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = env.http.get(f"{env.url}/v1/{name}", timeout=10).json()
        if op.get("done") or time.monotonic() > deadline:
            return op
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- stores


def test_unknown_store_answers_404_with_google_error_shape(env: Env) -> None:
    resp = env.http.get(f"{env.url}/v1/projects/p/locations/l/datasets/d/dicomStores/nope/dicomWeb/studies")
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == 404 and error["status"] == "NOT_FOUND" and "nope" in error["message"]


def test_store_creation_is_idempotent(env: Env) -> None:
    again = env.admin("POST", "stores", {"name": STORE}).json()
    assert again == {"name": STORE, "created": False}
    bad = env.http.post(f"{env.url}/emulator/stores", json={"name": "stores/s"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_binds_to_loopback_only(tmp_path: Path) -> None:
    """Refused before any socket is made: the emulator never listens beyond 127.0.0.1."""
    with pytest.raises(ValueError, match="loopback"):
        HealthcareEmulator(tmp_path, host="192.0.2.10")  # a documentation address, not loopback


# ---------------------------------------------------------------------------------------------- QIDO-RS


def test_no_match_answers_204_with_an_empty_body(env: Env) -> None:
    for path in ("studies", "series", "instances", "studies/1.2/series/3.4/instances"):
        resp = env.http.get(f"{env.root}/{path}")
        assert resp.status_code == 204 and resp.content == b"", path
    env.seed("1.2.3", "1.2.3.4", 2)
    resp = env.http.get(f"{env.root}/instances", params={"SOPInstanceUID": "9.9.9"})
    assert resp.status_code == 204 and resp.content == b""


def test_default_limit_for_instances_is_1000_with_warning(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 1200)
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4/instances"
    first = env.http.get(url)
    assert first.status_code == 200
    assert first.headers["Content-Type"].startswith("application/dicom+json")
    assert len(first.json()) == 1000
    assert re.match(
        r'299 127\.0\.0\.1:\d+: "The number of results exceeded the maximum', first.headers["Warning"]
    )
    rest = env.http.get(url, params={"offset": 1000})
    assert len(rest.json()) == 200 and "Warning" not in rest.headers
    numbers = [value(i, "00200013") for i in first.json() + rest.json()]
    assert numbers == list(range(1, 1201))  # stable insertion order


def test_default_limit_for_studies_and_series_is_100(env: Env) -> None:
    for i in range(1, 106):
        env.seed(f"1.2.{i}", f"1.2.{i}.1", 1)
    studies = env.http.get(f"{env.root}/studies")
    series = env.http.get(f"{env.root}/series")
    assert len(studies.json()) == 100 and len(series.json()) == 100
    assert "Warning" in studies.headers and "Warning" in series.headers
    assert [value(s, "0020000D") for s in studies.json()][:3] == ["1.2.1", "1.2.2", "1.2.3"]
    assert len(env.http.get(f"{env.root}/studies", params={"limit": 200}).json()) == 105
    clamped = env.http.get(f"{env.root}/studies", params={"limit": 6000})
    assert len(clamped.json()) == 105 and "5000" in clamped.headers["Warning"]


def test_sixty_thousand_instances_page_with_maximum_limit(env: Env) -> None:
    started = time.monotonic()
    seeded = env.seed("1.2.840.99", "1.2.840.99.1", 60000)
    assert time.monotonic() - started < 5.0
    assert seeded["created"] == 60000
    url = f"{env.root}/studies/1.2.840.99/series/1.2.840.99.1/instances"
    page1 = env.http.get(url, params={"limit": 50000})
    assert "additional results" in page1.headers["Warning"]
    page2 = env.http.get(url, params={"limit": 50000, "offset": 50000})
    assert "Warning" not in page2.headers
    sops = [value(i, "00080018") for i in big_json(page1) + big_json(page2)]
    assert len(sops) == len(set(sops)) == 60000
    assert (
        sops[0] == "1.2.840.99.1.1"
        and sops[50000] == "1.2.840.99.1.50001"
        and sops[-1] == "1.2.840.99.1.60000"
    )
    assert env.http.get(url, params={"limit": 50000, "offset": 60000}).status_code == 204
    clamped = env.http.get(url, params={"limit": 60000, "offset": 59990})
    assert len(clamped.json()) == 10
    assert "maximum of 50000" in clamped.headers["Warning"]


def test_offset_above_one_million_answers_400(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 1)
    resp = env.http.get(f"{env.root}/instances", params={"offset": 1_000_001})
    assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert env.http.get(f"{env.root}/instances", params={"offset": 1_000_000}).status_code == 204
    for bad in ({"limit": "ten"}, {"limit": -1}, {"NotAKeyword": "x"}, {"SOPInstanceUID": "1"}):
        level = "series" if "SOPInstanceUID" in bad else "instances"
        assert env.http.get(f"{env.root}/{level}", params=bad).status_code == 400, bad


def test_attribute_matching_and_returned_attributes(env: Env) -> None:
    ct, mr = pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")
    assert env.stow([ct.read_bytes(), mr.read_bytes()]).status_code == 200
    ct_study, ct_series, ct_sop = uids(ct)
    ct_ds = dcmread(ct, stop_before_pixels=True)

    by_modality = env.http.get(f"{env.root}/instances", params={"Modality": "CT"}).json()
    assert [value(i, "00080018") for i in by_modality] == [ct_sop]
    instance = by_modality[0]
    for tag in ("0020000D", "0020000E", "00080018", "00080016", "00200013", "00080060", "00081190"):
        assert tag in instance, tag
    assert (
        value(instance, "00081190") == f"{env.root}/studies/{ct_study}/series/{ct_series}/instances/{ct_sop}"
    )
    assert all(re.fullmatch(r"[0-9A-F]{8}", key) and "vr" in elem for key, elem in instance.items())

    in_range = env.http.get(
        f"{env.root}/studies", params={"StudyDate": f"{ct_ds.StudyDate}-{ct_ds.StudyDate}"}
    )
    assert [value(s, "0020000D") for s in in_range.json()] == [ct_study]
    by_patient = env.http.get(f"{env.root}/studies", params={"PatientID": ct_ds.PatientID}).json()
    assert [value(s, "0020000D") for s in by_patient] == [ct_study]
    uid_list = env.http.get(f"{env.root}/series", params={"SeriesInstanceUID": f"{ct_series},9.9"}).json()
    assert [value(s, "0020000E") for s in uid_list] == [ct_series]
    series = uid_list[0]
    for tag in ("0020000D", "0020000E", "00080060", "00201209", "00080020"):
        assert tag in series, tag
    assert value(series, "00201209") == 1

    scoped = env.http.get(f"{env.root}/studies/{ct_study}/series/{ct_series}/instances").json()
    assert "00100010" not in scoped[0]  # instance-level defaults only when scoped to a series
    full = env.http.get(
        f"{env.root}/studies/{ct_study}/series/{ct_series}/instances", params={"includefield": "all"}
    ).json()[0]
    assert value(full, "00100010") == {"Alphabetic": str(ct_ds.PatientName)}
    assert "7FE00010" not in full and "00180050" in full  # SliceThickness: every non-bulk attribute
    named = env.http.get(
        f"{env.root}/studies/{ct_study}/series/{ct_series}/instances", params={"includefield": "00100010"}
    ).json()[0]
    assert "00100010" in named


# ---------------------------------------------------------------------------------------------- STOW + WADO


def test_stow_then_retrieve_as_stored_is_byte_identical(env: Env) -> None:
    files = [pydicom_file(name) for name in REAL_FILES]
    resp = env.stow([f.read_bytes() for f in files])
    assert resp.status_code == 200, resp.text
    referenced = resp.json()["00081199"]["Value"]
    assert [value(r, "00081155") for r in referenced] == [uids(f)[2] for f in files]
    for path in files:
        study, series, sop = uids(path)
        url = f"{env.root}/studies/{study}/series/{series}/instances/{sop}"
        single = env.http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert single.status_code == 200
        stored_ts = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert single.headers["Content-Type"] == f"application/dicom; transfer-syntax={stored_ts}"
        assert single.content == path.read_bytes(), path.name
        multi = env.http.get(url, headers={"Accept": MULTIPART_ANY})
        _, parts = parse_multipart(multi)
        assert [content for _, content in parts] == [path.read_bytes()]
        assert parts[0][0]["content-type"] == f"application/dicom; transfer-syntax={stored_ts}"
        series_resp = env.http.get(
            f"{env.root}/studies/{study}/series/{series}", headers={"Accept": MULTIPART_ANY}
        )
        assert path.read_bytes() in [content for _, content in parse_multipart(series_resp)[1]]


def test_stow_duplicates_keep_the_first_and_report_failures(env: Env) -> None:
    ct, mr = pydicom_file("CT_small.dcm").read_bytes(), pydicom_file("MR_small.dcm").read_bytes()
    assert env.stow([ct]).status_code == 200
    again = env.stow([ct])
    assert again.status_code == 409
    failed = again.json()["00081198"]["Value"][0]
    assert value(failed, "00081197") == 0x0111 and "00081199" not in again.json()
    partial = env.stow([ct, mr])
    assert partial.status_code == 202
    assert len(partial.json()["00081199"]["Value"]) == 1 and len(partial.json()["00081198"]["Value"]) == 1
    garbage = env.stow([b"not dicom at all"])
    assert garbage.status_code == 409 and value(garbage.json()["00081198"]["Value"][0], "00081197") == 0xC000
    assert env.http.get(f"{env.root}/instances").json().__len__() == 2


def test_stow_single_part_and_chunked_request_body(env: Env) -> None:
    data = pydicom_file("MR_small.dcm").read_bytes()
    resp = env.http.post(f"{env.root}/studies", data=data, headers={"Content-Type": "application/dicom"})
    assert resp.status_code == 200
    rle = pydicom_file("SC_rgb_rle.dcm").read_bytes()
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + rle + b"\r\n--b--\r\n"
    chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))  # a generator: chunked encoding
    resp = env.http.post(
        f"{env.root}/studies", data=chunks, headers={"Content-Type": "multipart/related; boundary=b"}
    )
    assert resp.status_code == 200, resp.text
    assert len(env.http.get(f"{env.root}/instances").json()) == 2


def test_whole_type_quoted_answers_406_listing_the_accepted_combinations(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 1)
    accept = f'multipart/related; type="application/dicom; transfer-syntax={EXPLICIT}"'
    resp = env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4", headers={"Accept": accept})
    assert resp.status_code == 406
    message = resp.json()["error"]["message"]
    assert message.startswith(f"no supported media type found in [{accept}]")
    assert f'multipart/related; transfer-syntax={EXPLICIT}; type="application/dicom"' in message
    assert 'multipart/related; transfer-syntax=*; type="application/dicom"' in message
    single = env.http.get(
        f"{env.root}/studies/1.2.3/series/1.2.3.4", headers={"Accept": "application/dicom; transfer-syntax=*"}
    )
    assert single.status_code == 406  # single part only for an instance


def test_accept_negotiation_defaults_and_unquoted_type(env: Env) -> None:
    implicit = pydicom_file("MR_small_implicit.dcm")
    assert env.stow([implicit.read_bytes()]).status_code == 200
    study, series, sop = uids(implicit)
    url = f"{env.root}/studies/{study}/series/{series}/instances/{sop}"
    for accept in (
        None,
        "*/*",
        'multipart/related; type="application/dicom"',
        "multipart/related; type=application/dicom",
    ):
        headers = {} if accept is None else {"Accept": accept}
        resp = env.http.get(url, headers=headers)
        assert resp.status_code == 200, accept
        ((part_headers, content),) = parse_multipart(resp)[1]
        assert part_headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
        ds = dcmread(io.BytesIO(content))  # transcoded to the default, explicit VR little endian
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT and ds.SOPInstanceUID == sop
        assert ds.PixelData == dcmread(implicit).PixelData
    same = env.http.get(
        url, headers={"Accept": f"multipart/related; type=application/dicom; transfer-syntax={IMPLICIT}"}
    )
    assert parse_multipart(same)[1][0][1] == implicit.read_bytes()  # asked for what is stored: stored bytes


def test_transcoding_rle_and_refusing_what_pydicom_cannot(env: Env) -> None:
    rle, j2k = pydicom_file("SC_rgb_rle.dcm"), pydicom_file("JPEG2000.dcm")
    assert env.stow([rle.read_bytes(), j2k.read_bytes()]).status_code == 200
    study, series, sop = uids(rle)
    resp = env.http.get(f"{env.root}/studies/{study}/series/{series}/instances/{sop}")
    ds = dcmread(io.BytesIO(parse_multipart(resp)[1][0][1]))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.SamplesPerPixel
    study, series, sop = uids(j2k)
    refused = env.http.get(f"{env.root}/studies/{study}/series/{series}/instances/{sop}")
    assert refused.status_code == 406
    assert "emulator cannot transcode 1.2.840.10008.1.2.4.91 to 1.2.840.10008.1.2.1" in refused.text
    ok = env.http.get(
        f"{env.root}/studies/{study}/series/{series}/instances/{sop}", headers={"Accept": MULTIPART_ANY}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("quoting", ["quoted", "unquoted"])
def test_multipart_structure(env: Env, quoting: str) -> None:
    env.admin("POST", "config", {"boundaryQuoting": quoting})
    env.seed("1.2.3", "1.2.3.4", 5, size=3000)
    resp = env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4", headers={"Accept": MULTIPART_ANY})
    content_type = resp.headers["Content-Type"]
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    assert ('boundary="' in content_type) == (quoting == "quoted")
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    boundary, parts = parse_multipart(resp)
    assert len(parts) == 5
    for index, (headers, content) in enumerate(parts, start=1):
        assert headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
        ds = dcmread(io.BytesIO(content))
        assert ds.SOPInstanceUID == f"1.2.3.4.{index}" and ds.InstanceNumber == index
        assert 2500 < len(content) < 3500
    assert boundary not in b"".join(content for _, content in parts).decode("latin-1")


def test_study_retrieve_and_404s(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 2)
    env.seed("1.2.3", "1.2.3.5", 3)
    study = env.http.get(f"{env.root}/studies/1.2.3", headers={"Accept": MULTIPART_ANY})
    assert len(parse_multipart(study)[1]) == 5
    for path in ("studies/9.9", "studies/1.2.3/series/9.9", "studies/1.2.3/series/1.2.3.4/instances/9.9"):
        resp = env.http.get(f"{env.root}/{path}", headers={"Accept": MULTIPART_ANY})
        assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND", path
        assert env.http.get(f"{env.root}/{path}/metadata").status_code == 404


def test_metadata_has_no_bulk_bytes(env: Env) -> None:
    ct = pydicom_file("CT_small.dcm")
    env.stow([ct.read_bytes()])
    env.seed("1.2.3", "1.2.3.4", 3)
    study, series, sop = uids(ct)
    for url in (
        f"{env.root}/studies/{study}/series/{series}/metadata",
        f"{env.root}/studies/{study}/series/{series}/instances/{sop}/metadata",
        f"{env.root}/studies/1.2.3/series/1.2.3.4/metadata",
    ):
        resp = env.http.get(url, headers={"Accept": "application/dicom+json"})
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/dicom+json")
        for item in resp.json():
            pixel = item["7FE00010"]
            assert set(pixel) == {"vr", "BulkDataURI"} and pixel["BulkDataURI"].startswith(env.root)
            inline = [elem["InlineBinary"] for elem in item.values() if "InlineBinary" in elem]
            assert all(len(text) <= 1368 for text in inline)  # only small binary values (<= 1 KiB) inline
            assert "00100010" in item
    ct_meta = env.http.get(f"{env.root}/studies/{study}/series/{series}/metadata").json()[0]
    assert len(json.dumps(ct_meta)) < len(ct.read_bytes())  # the 32 KB of pixels are not in it


def test_seeded_instances_are_valid_part10_in_both_little_endian_syntaxes(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 2, size=5000, modality="CT", patientName="SEED^PATIENT")
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.2"
    stored = env.http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    ds = dcmread(io.BytesIO(stored.content))
    assert ds.Modality == "CT" and str(ds.PatientName) == "SEED^PATIENT" and ds.InstanceNumber == 2
    assert int(stored.headers["Content-Length"]) == len(stored.content)
    implicit = env.http.get(url, headers={"Accept": f"application/dicom; transfer-syntax={IMPLICIT}"})
    ids = dcmread(io.BytesIO(implicit.content))
    assert ids.file_meta.TransferSyntaxUID == IMPLICIT and ids.PixelData == ds.PixelData
    again = env.http.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert again.content == stored.content  # deterministic bytes
    jpeg = env.seed("1.2.3", "1.2.3.6", 1, transferSyntax="1.2.840.10008.1.2.4.50")
    jurl = f"{env.root}/studies/1.2.3/series/1.2.3.6/instances/{jpeg['firstSopInstanceUid']}"
    assert env.http.get(jurl).status_code == 406  # cannot decompress synthetic JPEG
    raw = env.http.get(jurl, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert dcmread(io.BytesIO(raw.content)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"


def test_large_series_streams_with_exact_content_length(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 3, size=20_000_000)
    with env.http.get(
        f"{env.root}/studies/1.2.3/series/1.2.3.4", headers={"Accept": MULTIPART_ANY}, stream=True
    ) as resp:
        total = sum(len(chunk) for chunk in resp.iter_content(1 << 20))
        assert total == int(resp.headers["Content-Length"]) > 60_000_000
    stats = env.admin("GET", "stats").json()
    assert stats["instancesServed"] == 3 and stats["instanceBytesServed"] > 60_000_000
    metrics = env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4:getSeriesMetrics").json()
    assert metrics["instanceCount"] == "3" and int(metrics["blobStorageSizeBytes"]) > 60_000_000
    assert metrics["series"] == f"{STORE}/dicomWeb/studies/1.2.3/series/1.2.3.4"


def test_twenty_concurrent_retrieves(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 20, size=100_000)
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.{{}}"

    def fetch(index: int) -> bytes:
        with requests.Session() as http:  # one connection per worker, as a client pool would
            resp = http.get(url.format(index), headers={"Accept": "application/dicom; transfer-syntax=*"})
            assert resp.status_code == 200
            return resp.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        bodies = list(pool.map(fetch, range(1, 21)))
    assert [dcmread(io.BytesIO(b)).InstanceNumber for b in bodies] == list(range(1, 21))


# ---------------------------------------------------------------------------------------------- deletes


def test_series_delete_is_a_long_running_operation(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 4)
    env.seed("1.2.3", "1.2.3.5", 1)
    resp = env.http.delete(f"{env.root}/studies/1.2.3/series/1.2.3.4")
    assert resp.status_code == 200
    op = resp.json()
    assert re.fullmatch(r"projects/p/locations/us-central1/datasets/d/operations/\d+", op["name"])
    metadata = op["metadata"]
    assert metadata["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert metadata["apiMethodName"] == "google.cloud.healthcare.v1.dicomweb.studies.series.DeleteSeries"
    assert {"createTime", "counter", "logsUrl"} <= set(metadata) and "done" not in op
    running = env.http.get(f"{env.url}/v1/{op['name']}").json()
    assert not running.get("done")
    assert len(env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4/instances").json()) == 4
    done = wait_done(env, op["name"])
    assert done["done"] is True and done["response"] == {} and "error" not in done
    assert "endTime" in done["metadata"] and done["metadata"]["counter"] == {"success": "4"}
    assert env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4/instances").status_code == 204
    assert env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4").status_code == 404
    assert len(env.http.get(f"{env.root}/studies/1.2.3/instances").json()) == 1  # the other series stays


def test_study_delete(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 2)
    env.seed("1.2.3", "1.2.3.5", 2)
    assert len(env.http.get(f"{env.root}/studies/1.2.3/instances").json()) == 4
    assert env.http.put(f"{env.root}/studies/1.2.3").status_code == 405
    op = env.http.delete(f"{env.root}/studies/1.2.3").json()
    assert op["metadata"]["apiMethodName"].endswith("DeleteStudy")
    assert "error" not in wait_done(env, op["name"])
    assert env.http.get(f"{env.root}/studies").status_code == 204


def test_absent_series_delete_in_both_modes(env: Env) -> None:
    resp = env.http.delete(f"{env.root}/studies/9.9/series/9.9")
    assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"
    env.admin("POST", "config", {"absentDelete": "operation", "operationDelay": 0.05})
    resp = env.http.delete(f"{env.root}/studies/9.9/series/9.9")
    assert resp.status_code == 200
    done = wait_done(env, resp.json()["name"])
    assert done["error"]["code"] == 5 and "not found" in done["error"]["message"] and "response" not in done


def test_instance_delete_is_synchronous(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 2)
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.1"
    resp = env.http.delete(url)
    assert resp.status_code == 200 and resp.json() == {}
    assert env.http.get(url).status_code == 404
    assert env.http.delete(url).status_code == 404
    assert len(env.http.get(f"{env.root}/instances").json()) == 1


def test_unknown_operation_answers_404(env: Env) -> None:
    resp = env.http.get(f"{env.url}/v1/projects/p/locations/us-central1/datasets/d/operations/123")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == 404


def test_storing_into_a_series_being_deleted_answers_409(env: Env) -> None:
    mr = pydicom_file("MR_small.dcm")
    study, series, _ = uids(mr)
    env.seed(study, series, 2)
    env.admin("POST", "config", {"operationDelay": 1.0})
    op = env.http.delete(f"{env.root}/studies/{study}/series/{series}").json()
    resp = env.stow([mr.read_bytes()])
    assert resp.status_code == 409 and value(resp.json()["00081198"]["Value"][0], "00081197") == 0x0110
    blocked = env.http.post(
        f"{env.url}/emulator/seed",
        json={"store": STORE, "study": study, "series": series, "count": 1, "start": 9},
    )
    assert blocked.status_code == 409
    assert "error" not in wait_done(env, op["name"])
    assert env.stow([mr.read_bytes()]).status_code == 200  # allowed again once done


# ---------------------------------------------------------------------------------------------- faults


def test_fault_status_with_retry_after_and_times(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 1)
    env.admin(
        "POST",
        "faults",
        {"rules": [{"method": "GET", "path": "/instances$", "status": 503, "retryAfter": 2, "times": 2}]},
    )
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4/instances"
    first, second, third = (env.http.get(url) for _ in range(3))
    for resp in (first, second):
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
        assert resp.json()["error"]["status"] == "UNAVAILABLE"
    assert third.status_code == 200
    assert (
        env.http.delete(f"{env.root}/studies/1.2.3/series/9.9").status_code == 404
    )  # other method: no fault
    rules = env.admin("GET", "faults").json()["rules"]
    assert rules[0]["fired"] == 2
    env.admin("DELETE", "faults")
    assert env.admin("GET", "faults").json() == {"rules": []}


def test_fault_rate_is_deterministic_with_a_seed(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 1)

    def run() -> list[int]:
        env.admin("POST", "faults", {"rules": [{"path": "/studies", "status": 429, "rate": 0.5, "seed": 7}]})
        return [env.http.get(f"{env.root}/studies").status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and 429 in first and 200 in first


def test_fault_latency(env: Env) -> None:
    env.admin("POST", "faults", {"rules": [{"path": "/studies$", "latency": 0.4}]})
    started = time.monotonic()
    resp = env.http.get(f"{env.root}/studies")
    assert resp.status_code == 204 and time.monotonic() - started >= 0.4


def test_fault_drop_after_bytes_truncates_the_body(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 2, size=200_000)
    env.admin("POST", "faults", {"rules": [{"path": "/series/1.2.3.4$", "dropAfterBytes": 4096, "times": 1}]})
    url = f"{env.root}/studies/1.2.3/series/1.2.3.4"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        env.http.get(url, headers={"Accept": MULTIPART_ANY})
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    env.admin("POST", "faults", {"rules": [{"path": "/series/1.2.3.4$", "dropAfterBytes": 4096}]})
    conn.request("GET", parts.path, headers={"Accept": MULTIPART_ANY})
    raw = conn.getresponse()
    assert raw.status == 200 and int(raw.headers["Content-Length"]) > 400_000
    with pytest.raises(http.client.IncompleteRead) as info:
        raw.read()
    assert len(info.value.partial) == 4096
    conn.close()
    env.admin("DELETE", "faults")
    assert env.http.get(url, headers={"Accept": MULTIPART_ANY}).status_code == 200


def test_fault_operation_error_and_delay_per_call(env: Env) -> None:
    env.seed("1.2.3", "1.2.3.4", 3)
    env.admin("POST", "config", {"operationDelay": 30})
    error = {"code": 13, "message": "injected internal error"}
    rule = {
        "method": "DELETE",
        "path": "/series/",
        "operationError": error,
        "operationDelay": 0.05,
        "times": 1,
    }
    env.admin("POST", "faults", {"rules": [rule]})
    started = time.monotonic()
    resp = env.http.delete(f"{env.root}/studies/1.2.3/series/1.2.3.4")
    assert resp.status_code == 200
    done = wait_done(env, resp.json()["name"])
    assert time.monotonic() - started < 5  # the rule's delay, not the configured 30 s
    assert done["done"] is True and done["error"] == error and "response" not in done
    assert done["metadata"]["counter"] == {"failure": "1"}
    assert len(env.http.get(f"{env.root}/studies/1.2.3/series/1.2.3.4/instances").json()) == 3  # kept
    later = env.http.delete(f"{env.root}/studies/1.2.3/series/1.2.3.4").json()  # the rule fired once
    assert not wait_done(env, later["name"], timeout=0.2).get("done")


def test_fault_rules_are_validated(env: Env) -> None:
    for rule in ({"statsu": 500}, {"path": "("}, {"status": "x"}, {"operationError": {"message": "no code"}}):
        resp = env.http.post(f"{env.url}/emulator/faults", json={"rules": [rule]})
        assert resp.status_code == 400, rule


# ---------------------------------------------------------------------------------------------- log and reset


def test_request_log_and_reset(env: Env) -> None:
    env.http.delete(f"{env.url}/emulator/requests")
    env.admin("POST", "faults", {"rules": [{"path": "/series$", "status": 500, "times": 1}]})
    env.http.get(f"{env.root}/series", headers={"Accept": "application/dicom+json"})
    env.http.get(f"{env.root}/instances", params={"limit": 5})
    log = env.admin("GET", "requests").json()
    path = f"/v1/{STORE}/dicomWeb"
    assert log == [
        {"method": "GET", "path": f"{path}/series", "query": "", "accept": "application/dicom+json",
         "status": 500, "faulted": True},
        {"method": "GET", "path": f"{path}/instances", "query": "limit=5", "accept": "*/*",
         "status": 204, "faulted": False},
    ]  # fmt: skip
    env.http.delete(f"{env.url}/emulator/requests")
    assert env.admin("GET", "requests").json() == []
    env.seed("1.2.3", "1.2.3.4", 1)
    env.admin("POST", "config", {"operationDelay": 9})
    env.admin("POST", "reset")
    assert env.http.get(f"{env.root}/studies").status_code == 404  # stores are gone too
    assert env.admin("GET", "config").json()["operationDelay"] == 0.3
    assert env.admin("GET", "faults").json() == {"rules": []}


# ---------------------------------------------------------------------------------------------- command line


def test_command_line_prints_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.local.healthcare_emulator", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path), "--operation-delay", "0.1", "--absent-delete", "operation"],
        cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no READY line within 20 s"
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"READY (http://127\.0\.0\.1:(\d+))", line)
        assert match and match.group(2) != "0", line
        url = match.group(1)
        assert requests.get(f"{url}/emulator/health", timeout=5).json() == {"status": "ok"}
        config = requests.get(f"{url}/emulator/config", timeout=5).json()
        assert config["operationDelay"] == 0.1 and config["absentDelete"] == "operation"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        returncode = proc.wait(timeout=10)
    assert returncode == 0


def test_in_process_start_and_stop_free_the_port(tmp_path: Path) -> None:
    emu = start_emulator("127.0.0.1", 0, tmp_path)
    with requests.Session() as http:
        assert http.get(f"{emu.url}/emulator/health").status_code == 200  # a keep-alive connection stays open
        emu.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            http.get(f"{emu.url}/emulator/health", timeout=2)
