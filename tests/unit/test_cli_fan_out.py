"""`fan-out` (worker/cli/fan_out.py) against a fake DICOMweb search and a publisher that hands out futures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from google.api_core import exceptions as api_exceptions

from tests.unit.cli_fakes import (
    DICOMWEB_ENV,
    ENV,
    STORE_REF,
    STUDY_PATH,
    FakePublisherClient,
    run_cli,
    usage_line,
)
from tests.unit.fakes import REQUEST_TOPIC, SERIES, STORE, STUDY
from worker.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Clients
from worker.dicomweb import DicomWebClient
from worker.errors import Code, PermanentError, RetryableError, SourceGone
from worker.http_exchange import build_transport
from worker.models import DicomStore, SeriesRef
from worker.settings import Auth, Settings


class FakeDicomWeb(DicomWebClient):
    """The real `root` check (no request is sent); search_series answers from a list, or raises."""

    def __init__(self, settings: Settings, found: list[SeriesRef] | BaseException) -> None:
        super().__init__(
            settings, build_transport(replace(settings, dicomweb_auth=Auth.NONE))
        )  # no request is sent
        self.found = found
        self.searches: list[tuple[DicomStore | None, str | None, dict[str, str], int]] = []

    def search_series(
        self, store: DicomStore | None, study_uid: str | None, filters: Any, page_size: int
    ) -> list[SeriesRef]:
        self.searches.append((store, study_uid, dict(filters), page_size))
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found

    def search_series_page(
        self, store: DicomStore | None, params: Any, limit: int, offset: int
    ) -> list[SeriesRef]:
        """A store's listing (worker.enumeration): pages of `found`, each recorded like a search."""
        self.searches.append((store, None, {**params, "offset": str(offset)}, limit))
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found[offset : offset + limit]


def refs(count: int, store: DicomStore | None = STORE_REF) -> list[SeriesRef]:
    return [SeriesRef(store, f"{STUDY}.{i % 3}", f"{SERIES}.{i}") for i in range(count)]


def fan_out_clients(
    found: list[SeriesRef] | BaseException, publisher: FakePublisherClient | None = None
) -> tuple[Clients, list[FakeDicomWeb]]:
    made: list[FakeDicomWeb] = []

    def dicomweb(settings: Settings) -> DicomWebClient:
        made.append(FakeDicomWeb(settings, found))
        return made[-1]

    def no_publisher() -> Any:
        raise AssertionError("a dry run made a publisher")

    publisher_factory: Callable[[], Any] = (lambda: publisher) if publisher is not None else no_publisher
    return Clients(dicomweb=dicomweb, publisher=publisher_factory), made


def test_fan_out_publishes_one_request_per_series(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(7)
    client = FakePublisherClient()
    clients, made = fan_out_clients(found, client)
    argv = ["fan-out", "archive", STORE, "--modality", "ct", "--study-date", "20240101-20241231"]
    argv += ["--page-size", "3", "--destination", "gs://bucket/archive", "--option", "mode=series"]

    code, out, err = run_cli(capsys, *argv, clients=clients)

    assert code == EXIT_OK, err
    assert out == "series found: 7; requests published: 7; failures: 0\n"
    assert err.strip().splitlines()[-1] == "published 7/7"
    filters = {"Modality": "CT", "StudyDate": "20240101-20241231"}
    offsets = [str(Settings().search_max_offset), "0", "3", "6", "7"]  # the probe, then pages to an empty one
    assert made[0].searches == [(STORE_REF, None, {**filters, "offset": offset}, 3) for offset in offsets]
    assert [body["series"] for _, body, _ in client.published] == [ref.source for ref in found]
    for topic, body, attributes in client.published:
        assert topic == REQUEST_TOPIC
        assert attributes == {"action": "archive"}
        assert body["destination"] == "gs://bucket/archive"
        assert body["options"] == {"mode": "series"}
        assert "requestId" not in body
    assert client.stopped


def test_fan_out_of_a_study_searches_that_study(capsys: pytest.CaptureFixture[str]) -> None:
    clients, made = fan_out_clients(refs(2), FakePublisherClient())
    code, _, err = run_cli(capsys, "fan-out", "search", STUDY_PATH, clients=clients)
    assert code == EXIT_OK, err
    assert made[0].searches == [(STORE_REF, STUDY, {}, Settings().search_page_size)]


def test_fan_out_counts_failed_publishes_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(5)
    failing = found[2].source
    client = FakePublisherClient(
        fail_for=lambda body: (
            api_exceptions.ServiceUnavailable("down\nmore") if body["series"] == failing else None
        )
    )
    clients, _ = fan_out_clients(found, client)

    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)

    assert code == EXIT_FAILED
    assert out == "series found: 5; requests published: 4; failures: 1\n"
    assert f"not published: {failing}: ServiceUnavailable: 503 down" in err.splitlines()
    assert "published 4/5, 1 failed" in err


def test_fan_out_counts_a_refused_publish(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients(refs(2), FakePublisherClient(refuse=True))
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert code == EXIT_FAILED
    assert out == "series found: 2; requests published: 0; failures: 2\n"
    assert err.count("ValueError: the client is stopped") == 2


def test_fan_out_dry_run_lists_and_publishes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    found = refs(3, store=None)
    clients, _ = fan_out_clients(found)
    code, out, err = run_cli(capsys, "fan-out", "delete", "-", "--dry-run", env=DICOMWEB_ENV, clients=clients)
    assert code == EXIT_OK
    assert out.splitlines() == [f"studies/{ref.study_uid}/series/{ref.series_uid}" for ref in found]
    assert usage_line(err) == "series found: 3; dry run: nothing published"


def test_fan_out_dry_run_needs_no_request_topic(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients([])
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, "--dry-run", env={}, clients=clients)
    assert (code, out) == (EXIT_OK, "")
    assert usage_line(err) == "series found: 0; dry run: nothing published"


def test_fan_out_of_nothing_publishes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    clients, _ = fan_out_clients([])
    code, out, _ = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert (code, out) == (EXIT_OK, "series found: 0; requests published: 0; failures: 0\n")


@pytest.mark.parametrize(
    ("env", "target", "reason"),
    [
        (DICOMWEB_ENV, STORE, "this worker serves DICOMWEB_URL; give the series as studies/{study}/series/"),
        (ENV, f"studies/{STUDY}", "the series must name its DICOM store"),
    ],
)
def test_fan_out_target_must_fit_the_configured_server(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], target: str, reason: str
) -> None:
    clients, made = fan_out_clients(refs(1))
    code, _, err = run_cli(capsys, "fan-out", "search", target, env=env, clients=clients)
    assert code == EXIT_USAGE
    assert usage_line(err).startswith(f"python -m worker fan-out: error: {reason}")
    assert made[0].searches == []


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (SourceGone(), f"the series search failed: {STORE} is not found (404)"),
        (
            RetryableError("GET answered 503 after retries"),
            "the series search failed: GET answered 503 after",
        ),
        (PermanentError(Code.SEARCH_INCOMPLETE, "it ignores offset"), "the series search failed: it ignores"),
    ],
)
def test_fan_out_search_failures_exit_1(
    capsys: pytest.CaptureFixture[str], error: Exception, line: str
) -> None:
    clients, _ = fan_out_clients(error)
    code, out, err = run_cli(capsys, "fan-out", "search", STORE, clients=clients)
    assert (code, out) == (EXIT_FAILED, "")
    assert usage_line(err).startswith(line)


# -- restore and verify: the series folders of an archive ------------------------------------------


class FakeArchive:
    """The folders of an archive bucket, as Storage.subfolders lists them."""

    def __init__(self, folders: dict[str, list[str]]) -> None:
        self.folders = folders
        self.listed: list[str] = []

    def subfolders(self, location: Any) -> list[str]:
        self.listed.append(location.uri())
        return self.folders.get(location.prefix, [])


def archive_clients(archive: FakeArchive, publisher: FakePublisherClient | None = None) -> Clients:
    def no_dicomweb(settings: Settings) -> Any:
        raise AssertionError("an archive fan-out searched a store")

    def never() -> Any:
        raise AssertionError("a dry run made a publisher")

    return Clients(
        dicomweb=no_dicomweb,
        storage=lambda settings: archive,
        publisher=(lambda: publisher) if publisher is not None else never,
    )


@pytest.mark.parametrize("action", ["restore", "verify"])
def test_fan_out_over_an_archive_publishes_one_request_per_series_folder(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    archive = FakeArchive(
        {
            "cold": [f"{STUDY}.1", f"{STUDY}.2", "not-a-uid"],
            f"cold/{STUDY}.1": [f"{SERIES}.1", f"{SERIES}.2"],
            f"cold/{STUDY}.2": [f"{SERIES}.3", "tmp"],
        }
    )
    client = FakePublisherClient()

    code, out, err = run_cli(
        capsys,
        "fan-out",
        action,
        "gs://archive/cold",
        "--store",
        STORE,
        clients=archive_clients(archive, client),
    )

    assert code == EXIT_OK, err
    assert out == "series found: 3; requests published: 3; failures: 0\n"
    assert [body["series"] for _, body, _ in client.published] == [
        SeriesRef(STORE_REF, f"{STUDY}.1", f"{SERIES}.1").source,
        SeriesRef(STORE_REF, f"{STUDY}.1", f"{SERIES}.2").source,
        SeriesRef(STORE_REF, f"{STUDY}.2", f"{SERIES}.3").source,
    ]
    assert {body["destination"] for _, body, _ in client.published} == {"gs://archive/cold"}
    assert {attributes["action"] for _, _, attributes in client.published} == {action}
    assert archive.listed == [
        "gs://archive/cold",
        f"gs://archive/cold/{STUDY}.1",
        f"gs://archive/cold/{STUDY}.2",
    ]


def test_fan_out_restore_dry_run_lists_the_series(capsys: pytest.CaptureFixture[str]) -> None:
    archive = FakeArchive({"cold": [STUDY], f"cold/{STUDY}": [SERIES]})

    code, out, err = run_cli(
        capsys,
        "fan-out",
        "restore",
        "gs://archive/cold",
        "--store",
        STORE,
        "--dry-run",
        clients=archive_clients(archive),
    )

    assert code == EXIT_OK, err
    assert out == SeriesRef(STORE_REF, STUDY, SERIES).source + "\n"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["fan-out", "restore", "gs://archive/cold"], "give --store"),
        (["fan-out", "restore", STORE, "--store", STORE], "TARGET must be a gs://bucket/prefix URL"),
        (["fan-out", "verify", "gs://archive/cold", "--store", STORE, "--modality", "CT"], "not an archive"),
        (["fan-out", "archive", STORE, "--store", STORE], "--store goes with restore and verify"),
    ],
)
def test_fan_out_over_an_archive_refuses_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    code, _, err = run_cli(capsys, *argv)

    assert code == EXIT_USAGE
    assert reason in usage_line(err)
