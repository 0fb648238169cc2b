"""The worker's own checks, run before anything is published or run: the settings, the request (by the
function's parser, so a request the function would reject is refused here with the same reason) and
the kind of server a path names. Each failure is a `UsageError` (exit status 2, one line)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from worker.cli.arguments import UsageError
from worker.errors import InvalidValue, PermanentError, SettingsError
from worker.models import DicomStore, SeriesRef, check_uid
from worker.ports import DicomWebSource
from worker.request import Message, SeriesRequest, parse_request
from worker.settings import Settings

VALIDATION_MESSAGE_ID = "cli-validation"  # stands in for the message id while a request is checked


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """A bad value or setting refused by the worker's code becomes a usage error with its reason."""
    try:
        yield
    except PermanentError as error:
        raise UsageError(error.message) from None
    except (InvalidValue, SettingsError) as error:
        raise UsageError(str(error)) from None


def settings_from(env: Mapping[str, str], overrides: Mapping[str, str | None]) -> Settings:
    """The function's settings from `env`, with the flags that were given in place of their variables."""
    merged = dict(env)
    merged.update({name: value for name, value in overrides.items() if value is not None})
    with usage_errors():
        return Settings.from_env(merged)


def request_topic(settings: Settings) -> str:
    if settings.request_topic is None:
        raise UsageError("REQUEST_TOPIC is not set (set it, or give --request-topic projects/P/topics/T)")
    return settings.request_topic


def checked_request(
    action: str,
    series: str,
    *,
    destination: str | None,
    request_id: str | None,
    options: Sequence[tuple[str, object]],
    message_id: str = VALIDATION_MESSAGE_ID,
) -> SeriesRequest:
    """The request as the function will see it, checked by its own parser: bad fields are usage errors."""
    body: dict[str, Any] = {"action": action, "series": series}
    if destination is not None:
        body["destination"] = destination
    if request_id is not None:
        body["requestId"] = request_id
    if options:
        body["options"] = dict(options)
    data = json.dumps(body).encode("utf-8")
    with usage_errors():
        return parse_request(Message(data, {"action": action}, message_id))


def request_from_arguments(
    args: argparse.Namespace, message_id: str = VALIDATION_MESSAGE_ID
) -> SeriesRequest:
    """The checked request that `submit` and `run` name in their arguments (`one_request_arguments`)."""
    return checked_request(
        args.action,
        args.series,
        destination=args.destination,
        request_id=args.request_id,
        options=args.option,
        message_id=message_id,
    )


def message_data(request: SeriesRequest, *, keep_request_id: bool) -> bytes:
    """The message for a request (`SeriesRequest.as_json`). Without an explicit request id the message
    carries none, and the worker takes the Pub/Sub message id: the id `submit` prints."""
    body = request.as_json()
    if not keep_request_id:
        body.pop("requestId", None)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def parse_target(value: str, settings: Settings) -> tuple[DicomStore | None, str | None]:
    """A fan-out target: (store, study). `projects/.../dicomStores/s[/dicomWeb/studies/X]`, or with
    DICOMWEB_URL `studies/X` or `-` (`all`): every series of the server."""
    path = value.strip().strip("/")
    if path in ("-", "all"):
        if settings.dicomweb_url is None:
            raise UsageError(
                f"{value!r} (every series of the server) needs DICOMWEB_URL;"
                " for the Healthcare API give projects/{p}/locations/{l}/datasets/{d}/dicomStores/{s}"
            )
        return None, None
    parts = path.split("/")
    with usage_errors():
        if parts[0] == "projects":
            store = DicomStore.parse("/".join(parts[:8]))
            rest = parts[8:]
            if not rest:
                return store, None
            if len(rest) != 3 or rest[:2] != ["dicomWeb", "studies"]:
                raise UsageError(
                    "a study is projects/.../dicomStores/{s}/dicomWeb/studies/{study}; a store is"
                    " projects/.../dicomStores/{s}"
                )
            return store, check_uid(rest[2], "StudyInstanceUID")
        if len(parts) == 2 and parts[0] == "studies":
            return None, check_uid(parts[1], "StudyInstanceUID")
    raise UsageError(
        "the target is a study (projects/.../dicomStores/{s}/dicomWeb/studies/{study}, or studies/{study}"
        " with DICOMWEB_URL) or a store (projects/.../dicomStores/{s}, or - with DICOMWEB_URL)"
    )


def check_root(dicomweb: DicomWebSource, series: SeriesRef) -> None:
    """The configured server must be the kind the path names (a Healthcare store, or DICOMWEB_URL)."""
    with usage_errors():
        dicomweb.root(series)
