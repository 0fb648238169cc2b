"""Settings.from_env: defaults, each variable's validation, secrets, and the destination rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.continuation import KeyRing
from worker.errors import SettingsError
from worker.models import GcsLocation
from worker.settings import Auth, Settings

SECRET = "s3cr3t-Token.value"
KEYS = "k2=" + "B" * 40 + ",k1=" + "A" * 32


def settings_error(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(env)
    return str(error.value)


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings()
    assert settings.healthcare_api_url == "https://healthcare.googleapis.com/v1"
    assert settings.dicomweb_url is None
    assert settings.dicomweb_url is None
    assert settings.dicomweb_auth is Auth.GOOGLE
    assert settings.dicomweb_secret is None
    assert settings.completion_topic is None
    assert settings.request_topic is None
    assert settings.default_destination is None
    assert settings.allowed_buckets == ()
    assert settings.allowed_dicom_stores == ()
    assert settings.continuation_keys is None
    assert settings.delete_enabled is False
    assert settings.concurrency == 16
    assert settings.search_page_size == 5000
    assert settings.retry_total == 5


def test_empty_and_blank_variables_are_unset() -> None:
    assert Settings.from_env({"DICOMWEB_URL": "", "COMPLETION_TOPIC": "  ", "CONCURRENCY": " "}) == Settings()


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCURRENCY", "3")

    assert Settings.from_env().concurrency == 3


def test_every_variable() -> None:
    settings = Settings.from_env(
        {
            "HEALTHCARE_API_URL": "http://127.0.0.1:8080/v1/",
            "DICOMWEB_URL": " https://pacs.example.org:8443/dicom-web/ ",
            "DICOMWEB_AUTH": "None",
            "COMPLETION_TOPIC": "projects/my-project/topics/series-done",
            "REQUEST_TOPIC": "projects/my-project/topics/series-requests",
            "DEFAULT_DESTINATION": "gs://my-bucket/dicom/",
            "ALLOWED_BUCKETS": " my-bucket/dicom , gs://other-bucket,, third-bucket ",
            "ALLOWED_DICOM_STORES": (
                "projects/p-1234/locations/*/datasets/*/dicomStores/*,"
                " projects/q-1234/locations/*/datasets/d/dicomStores/s , dicomweb"
            ),
            "CONTINUATION_KEYS": KEYS,
            "DELETE_ENABLED": "TRUE",
            "CONCURRENCY": "64",
            "UPLOAD_BUFFER_MIB": "512",
            "DEADLINE_SECONDS": "300.5",
            "SEARCH_PAGE_SIZE": "50000",
            "EVENT_INLINE_BYTES": "1024",
            "HTTP_TIMEOUT_SECONDS": "1",
            "RETRY_TOTAL": "0",
        }
    )

    assert settings.healthcare_api_url == "http://127.0.0.1:8080/v1"
    assert settings.dicomweb_url == "https://pacs.example.org:8443/dicom-web"
    assert settings.dicomweb_url is not None
    assert settings.dicomweb_auth is Auth.NONE
    assert settings.completion_topic == "projects/my-project/topics/series-done"
    assert settings.request_topic == "projects/my-project/topics/series-requests"
    assert settings.default_destination == GcsLocation("my-bucket", "dicom")
    assert settings.allowed_buckets == (
        GcsLocation("my-bucket", "dicom"),
        GcsLocation("other-bucket", ""),
        GcsLocation("third-bucket", ""),
    )
    assert settings.allowed_dicom_stores == (
        "projects/p-1234/locations/*/datasets/*/dicomStores/*",
        "projects/q-1234/locations/*/datasets/d/dicomStores/s",
        "dicomweb",
    )
    assert settings.continuation_keys == KeyRing.parse(KEYS)
    assert settings.delete_enabled is True
    assert settings.concurrency == 64
    assert settings.upload_buffer_mib == 512
    assert settings.deadline_seconds == 300.5
    assert settings.search_page_size == 50_000
    assert settings.event_inline_bytes == 1024
    assert settings.http_timeout_seconds == 1.0
    assert settings.retry_total == 0


@pytest.mark.parametrize(
    ("value", "enabled"), [("true", True), ("1", True), ("Yes", True), ("0", False), ("no", False)]
)
def test_delete_enabled_values(value: str, enabled: bool) -> None:
    assert Settings.from_env({"DELETE_ENABLED": value}).delete_enabled is enabled


@pytest.mark.parametrize(("value", "enabled"), [("true", True), ("1", True), ("false", False), ("no", False)])
def test_restore_enabled_values(value: str, enabled: bool) -> None:
    assert Settings.from_env({"RESTORE_ENABLED": value}).restore_enabled is enabled


def test_restore_is_off_unless_enabled() -> None:
    assert Settings.from_env({}).restore_enabled is False
    assert Settings.from_env({"DELETE_ENABLED": "true"}).restore_enabled is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "HEALTHCARE_API_URL",
            "ftp://healthcare.example",
            "must be an http(s) URL without query or fragment",
        ),
        ("HEALTHCARE_API_URL", "healthcare.googleapis.com/v1", "must be an http(s) URL"),
        (
            "HEALTHCARE_API_URL",
            "https://h.example/v1?key=x",
            "must be an http(s) URL without query or fragment",
        ),
        ("DICOMWEB_URL", "http://pacs/dicom-web#x", "must be an http(s) URL without query or fragment"),
        ("DICOMWEB_URL", "http://user:pw@pacs/dicom-web", "must be an http(s) URL"),
        ("DICOMWEB_URL", "http://pacs/dicom web", "must be an http(s) URL"),
        ("DICOMWEB_AUTH", "kerberos", "must be one of google, none, basic, bearer"),
        ("COMPLETION_TOPIC", "series-done", "must be a full topic path, projects/{project}/topics/{topic}"),
        ("COMPLETION_TOPIC", "projects/p/subscriptions/s", "must be a full topic path"),
        ("REQUEST_TOPIC", "projects/my-project/topics/a b", "must be a full topic path"),
        ("DEFAULT_DESTINATION", "my-bucket/dicom", "destination must be a gs://bucket/prefix URL"),
        (
            "DEFAULT_DESTINATION",
            "gs://My-Bucket",
            "destination bucket is not a valid Cloud Storage bucket name",
        ),
        ("DEFAULT_DESTINATION", "gs://my-bucket/a/../b", "destination prefix components may hold"),
        (
            "ALLOWED_BUCKETS",
            "my-bucket,Bad Bucket",
            "destination bucket is not a valid Cloud Storage bucket name",
        ),
        ("ALLOWED_BUCKETS", "my-bucket/../x", "destination prefix components may hold"),
        ("DELETE_ENABLED", "maybe", "must be true or false"),
        ("RESTORE_ENABLED", "maybe", "must be true or false"),
        ("CONCURRENCY", "0", "must be between 1 and 64"),
        ("CONCURRENCY", "65", "must be between 1 and 64"),
        ("CONCURRENCY", "8.5", "must be an integer"),
        ("CONCURRENCY", "many", "must be an integer"),
        ("UPLOAD_BUFFER_MIB", "8", "must be between 16 and 16384"),
        ("DEADLINE_SECONDS", "0", "must be between 1 and 3600"),
        ("DEADLINE_SECONDS", "nan", "must be between 1 and 3600"),
        ("DEADLINE_SECONDS", "inf", "must be between 1 and 3600"),
        ("DEADLINE_SECONDS", "soon", "must be a number"),
        ("SEARCH_PAGE_SIZE", "50001", "must be between 1 and 50000"),
        ("SEARCH_PAGE_SIZE", "0", "must be between 1 and 50000"),
        ("EVENT_INLINE_BYTES", "1023", "must be between 1024 and 9500000"),
        ("HTTP_TIMEOUT_SECONDS", "601", "must be between 1 and 600"),
        ("RETRY_TOTAL", "-1", "must be between 0 and 20"),
        ("RETRY_TOTAL", "21", "must be between 0 and 20"),
    ],
)
def test_each_bad_variable_is_named(name: str, value: str, message: str) -> None:
    error = settings_error({name: value})

    assert error.startswith(name)
    assert message in error


# -- secrets --------------------------------------------------------------------------------------


def test_basic_auth_from_the_environment() -> None:
    settings = Settings.from_env(
        {"DICOMWEB_AUTH": "basic", "DICOMWEB_USERNAME": "orthanc", "DICOMWEB_PASSWORD": SECRET}
    )

    assert settings.dicomweb_auth is Auth.BASIC
    assert settings.dicomweb_username == "orthanc"
    assert settings.dicomweb_secret == SECRET


def test_basic_auth_password_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")

    settings = Settings.from_env(
        {"DICOMWEB_AUTH": "basic", "DICOMWEB_USERNAME": "orthanc", "DICOMWEB_PASSWORD_FILE": str(secret_file)}
    )

    assert settings.dicomweb_secret == SECRET


def test_bearer_token_from_the_environment() -> None:
    settings = Settings.from_env({"DICOMWEB_AUTH": "bearer", "DICOMWEB_TOKEN": SECRET})

    assert settings.dicomweb_auth is Auth.BEARER
    assert settings.dicomweb_secret == SECRET


def test_bearer_token_from_a_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET, encoding="utf-8")

    settings = Settings.from_env({"DICOMWEB_AUTH": "BEARER", "DICOMWEB_TOKEN_FILE": str(secret_file)})

    assert settings.dicomweb_secret == SECRET


def test_the_variable_wins_over_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-the-file", encoding="utf-8")

    settings = Settings.from_env(
        {"DICOMWEB_AUTH": "bearer", "DICOMWEB_TOKEN": SECRET, "DICOMWEB_TOKEN_FILE": str(secret_file)}
    )

    assert settings.dicomweb_secret == SECRET


@pytest.mark.parametrize("auth", ["google", "none"])
def test_secrets_are_ignored_without_basic_or_bearer(auth: str) -> None:
    settings = Settings.from_env(
        {"DICOMWEB_AUTH": auth, "DICOMWEB_TOKEN": SECRET, "DICOMWEB_PASSWORD": SECRET}
    )

    assert settings.dicomweb_secret is None


def test_basic_auth_needs_a_username() -> None:
    error = settings_error({"DICOMWEB_AUTH": "basic", "DICOMWEB_PASSWORD": SECRET})

    assert error == "DICOMWEB_USERNAME is required with DICOMWEB_AUTH=basic"


def test_basic_auth_needs_a_password() -> None:
    error = settings_error({"DICOMWEB_AUTH": "basic", "DICOMWEB_USERNAME": "orthanc"})

    assert error == "DICOMWEB_PASSWORD or DICOMWEB_PASSWORD_FILE is required"


def test_bearer_auth_needs_a_token() -> None:
    assert settings_error({"DICOMWEB_AUTH": "bearer"}) == "DICOMWEB_TOKEN or DICOMWEB_TOKEN_FILE is required"


@pytest.mark.parametrize("variable", ["DICOMWEB_TOKEN_FILE", "DICOMWEB_PASSWORD_FILE"])
def test_unreadable_secret_file(tmp_path: Path, variable: str) -> None:
    env = {
        "DICOMWEB_AUTH": "bearer" if "TOKEN" in variable else "basic",
        "DICOMWEB_USERNAME": "orthanc",
        variable: str(tmp_path / "missing"),
    }

    assert settings_error(env) == f"{variable} cannot be read"


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    """An empty mounted secret would send `Authorization: Bearer ` and fail every request later."""
    secret_file = tmp_path / "token"
    secret_file.write_text("\n", encoding="utf-8")

    error = settings_error({"DICOMWEB_AUTH": "bearer", "DICOMWEB_TOKEN_FILE": str(secret_file)})

    assert error.startswith("DICOMWEB_TOKEN")


def test_repr_never_shows_the_secret() -> None:
    settings = Settings.from_env(
        {
            "DICOMWEB_URL": "https://pacs.example.org/dicom-web",
            "DICOMWEB_AUTH": "basic",
            "DICOMWEB_USERNAME": "orthanc",
            "DICOMWEB_PASSWORD": SECRET,
        }
    )

    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}", repr([settings])):
        assert SECRET not in text
        assert "***" in text
        assert "https://pacs.example.org/dicom-web" in text


# -- destination_allowed --------------------------------------------------------------------------


def allowed(env: dict[str, str], destination: str) -> bool:
    return Settings.from_env(env).destination_allowed(GcsLocation.parse(destination))


@pytest.mark.parametrize("destination", ["gs://my-bucket", "gs://my-bucket/any/prefix", "gs://other-bucket"])
def test_nothing_is_allowed_without_allowed_buckets_or_a_default(destination: str) -> None:
    assert not allowed({}, destination)


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("gs://my-bucket/dicom", True),
        ("gs://my-bucket/elsewhere", True),
        ("gs://my-bucket", True),
        ("gs://other-bucket/dicom", False),
        ("gs://my-bucket-2/dicom", False),
    ],
)
def test_without_allowed_buckets_only_the_default_destinations_bucket(
    destination: str, expected: bool
) -> None:
    assert allowed({"DEFAULT_DESTINATION": "gs://my-bucket/dicom"}, destination) is expected


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("gs://b-one/in", True),
        ("gs://b-one/in/2024/x", True),
        ("gs://b-one/inbox", False),
        ("gs://b-one", False),
        ("gs://b-one/other", False),
        ("gs://b-two", True),
        ("gs://b-two/any/where", True),
        ("gs://default-bucket/x", False),
        ("gs://b-three", False),
    ],
)
def test_allowed_buckets_are_the_only_allowed_places(destination: str, expected: bool) -> None:
    env = {"ALLOWED_BUCKETS": "b-one/in,gs://b-two", "DEFAULT_DESTINATION": "gs://default-bucket/x"}

    assert allowed(env, destination) is expected


# -- ALLOWED_DICOM_STORES: whole path components ----------------------------------------------------

PATTERN_ERROR = (
    "ALLOWED_DICOM_STORES entry {n} must be projects/P/locations/L/datasets/D/dicomStores/S, each id"
    " either literal or exactly * (one whole id), or dicomweb"
)


@pytest.mark.parametrize(
    "pattern",
    [
        "projects/p-1234/*",
        "projects/*",
        "*",
        "projects/p-1234/locations/us/datasets/d/dicomStores/s*",
        "projects/p-1234/locations/us/datasets/d*x/dicomStores/s",
        "projects/**/locations/us/datasets/d/dicomStores/s",
        "projects/p-1234/locations/us/datasets/d/dicomStores/s/dicomWeb",
        "projects/p-1234/locations/us/datasets/d/dicomStores/?",
        "projects/p-1234/locations/us/datasets/d/dicomStores/[st]",
        "*/p-1234/locations/us/datasets/d/dicomStores/s",
        "projects/p-1234/*/us/datasets/d/dicomStores/s",
        "projects/p-1234/locations/US/datasets/d/dicomStores/s",
        "projects/p-1234/locations/us/datasets//dicomStores/s",
        "DICOMWEB",
    ],
)
def test_a_store_pattern_broader_or_other_than_it_looks_is_refused(pattern: str) -> None:
    error = settings_error({"ALLOWED_DICOM_STORES": f"dicomweb,{pattern}"})

    assert error == PATTERN_ERROR.format(n=2)


@pytest.mark.parametrize(
    "pattern",
    [
        "projects/*/locations/*/datasets/*/dicomStores/*",
        "projects/org.example:p-1234/locations/europe-west4/datasets/d_1.x/dicomStores/s-2",
        "projects/p-1234/locations/*/datasets/imaging/dicomStores/*",
        "dicomweb",
    ],
)
def test_store_patterns_of_whole_components(pattern: str) -> None:
    assert Settings.from_env({"ALLOWED_DICOM_STORES": pattern}).allowed_dicom_stores == (pattern,)


# -- CONTINUATION_KEYS -------------------------------------------------------------------------------


def test_continuation_keys_from_the_environment() -> None:
    keys = Settings.from_env({"CONTINUATION_KEYS": f" {KEYS} "}).continuation_keys

    assert keys is not None
    assert keys.key_ids == ("k2", "k1")


def test_continuation_keys_from_a_mounted_secret(tmp_path: Path) -> None:
    secret_file = tmp_path / "continuation-keys"
    secret_file.write_text(KEYS.replace(",", "\n") + "\n", encoding="utf-8")

    settings = Settings.from_env({"CONTINUATION_KEYS_FILE": str(secret_file)})

    assert settings.continuation_keys == KeyRing.parse(KEYS)


def test_continuation_key_file_that_cannot_be_read(tmp_path: Path) -> None:
    error = settings_error({"CONTINUATION_KEYS_FILE": str(tmp_path / "missing")})

    assert error == "CONTINUATION_KEYS_FILE cannot be read"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("B" * 40, "entry 1 is not KEY_ID=SECRET"),
        ("k1=short", "the secret of key k1 must be at least 32 characters"),
        ("k/1=" + "B" * 40, "entry 1: the key id must be 1 to 32 letters, digits, _ or -"),
        (KEYS + ",k1=" + "C" * 32, "key id k1 appears twice"),
    ],
)
def test_bad_continuation_keys_are_named_without_their_secret(value: str, message: str) -> None:
    error = settings_error({"CONTINUATION_KEYS": value})

    assert error == f"CONTINUATION_KEYS: {message}"
    assert "BBBB" not in error


def test_settings_never_show_a_continuation_key() -> None:
    settings = Settings.from_env({"CONTINUATION_KEYS": KEYS})

    assert "AAAA" not in repr(settings)
    assert "AAAA" not in str(settings.continuation_keys)


def test_request_topic_needs_continuation_keys_where_a_worker_runs() -> None:
    """A worker hands on to REQUEST_TOPIC and must sign and verify; a publisher of new requests (the CLI's
    submit) needs no key."""
    topic = {"REQUEST_TOPIC": "projects/my-project/topics/series-requests"}
    without = Settings.from_env(topic)

    with pytest.raises(SettingsError) as error:
        without.require_continuation_keys()
    assert str(error.value) == (
        "REQUEST_TOPIC needs CONTINUATION_KEYS or CONTINUATION_KEYS_FILE (KEY_ID=SECRET entries):"
        " the worker signs the follow-ups it hands on"
    )
    Settings.from_env({**topic, "CONTINUATION_KEYS": KEYS}).require_continuation_keys()
    Settings.from_env({}).require_continuation_keys()
