"""Google's Pub/Sub emulator as a managed process, and the few REST calls the stack makes to it."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .processes import (
    DEFAULT_READY_TIMEOUT,
    LOOPBACK,
    PROJECT,
    ManagedProcess,
    StackError,
    base_env,
    free_port,
    loopback_session,
)


class PullTimeout(TimeoutError):
    """Fewer messages than expected arrived before the timeout; ``events`` holds those that did (acked)."""

    def __init__(self, message: str, events: list[Event]) -> None:
        super().__init__(message)
        self.events = events


def _sdk_roots() -> Iterator[Path]:
    if os.environ.get("CLOUDSDK_ROOT_DIR"):
        yield Path(os.environ["CLOUDSDK_ROOT_DIR"])
    gcloud = shutil.which("gcloud")
    if gcloud:
        yield Path(gcloud).resolve().parents[1]  # <sdk_root>/bin/gcloud
    yield Path("/usr/lib/google-cloud-sdk")
    if gcloud:  # the slow, authoritative way (about 1 s)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=base_env({"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}),
            ).stdout.strip()
            if out:
                yield Path(out)


def find_pubsub_emulator_jar() -> Path:
    """``$PUBSUB_EMULATOR_JAR``, else ``<sdk_root>/platform/pubsub-emulator/lib/*-all.jar``."""
    if os.environ.get("PUBSUB_EMULATOR_JAR"):
        return Path(os.environ["PUBSUB_EMULATOR_JAR"])
    for root in _sdk_roots():
        jars = sorted(glob.glob(str(root / "platform/pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar")))
        if jars:
            return Path(jars[-1])
    raise StackError(
        "Pub/Sub emulator jar not found: install google-cloud-cli-pubsub-emulator or set PUBSUB_EMULATOR_JAR"
    )


class PubSubEmulator(ManagedProcess):
    """Google's Pub/Sub emulator on 127.0.0.1 (state in memory only). Ready when ``GET /`` answers ``Ok``."""

    #: JVM options: C1 only and the serial collector start the emulator noticeably faster on small machines.
    DEFAULT_JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

    def __init__(
        self,
        run_dir: str | Path,
        port: int | None = None,
        *,
        jvm_options: Iterable[str] = DEFAULT_JVM_OPTIONS,
        name: str = "pubsub-emulator",
    ) -> None:
        super().__init__(name, run_dir)
        self.jvm_options = list(jvm_options)
        self.port = port or free_port()
        self.host = f"{LOOPBACK}:{self.port}"  # the PUBSUB_EMULATOR_HOST value (no scheme)
        self.url = f"http://{self.host}"
        self._session = loopback_session()

    @staticmethod
    def available() -> bool:
        try:
            find_pubsub_emulator_jar()
        except StackError:
            return False
        return shutil.which("java") is not None

    def spawn(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise StackError("java not found: the Pub/Sub emulator needs a Java runtime")
        jar = find_pubsub_emulator_jar()
        env = base_env({key: os.environ[key] for key in ("JAVA_HOME",) if key in os.environ})
        command = [java, *self.jvm_options, "-jar", str(jar), f"--host={LOOPBACK}", f"--port={self.port}"]
        self._spawn(command, env, self.run_dir)

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        self.wait_answering(
            self._session, self.url + "/", lambda r: r.ok and r.text.strip() == "Ok", "Ok", timeout
        )


class PubSubRest:
    """The few Pub/Sub REST calls the stack needs, against the emulator."""

    def __init__(self, url: str, project: str = PROJECT) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.session = loopback_session()
        self._lock = threading.Lock()

    def topic_path(self, topic: str) -> str:
        return topic if topic.startswith("projects/") else f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        if subscription.startswith("projects/"):
            return subscription
        return f"projects/{self.project}/subscriptions/{subscription}"

    def _call(self, method: str, path: str, body: Any = None, ok_statuses: Iterable[int] = ()) -> Any:
        with self._lock:
            response = self.session.request(method, f"{self.url}/v1/{path}", json=body, timeout=30)
        if response.status_code in ok_statuses:
            return {}
        if not response.ok:
            raise StackError(f"Pub/Sub emulator {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def create_topic(self, topic: str) -> str:
        path = self.topic_path(topic)
        self._call("PUT", path, {})
        return path

    def delete_topic(self, topic: str) -> None:
        self._call("DELETE", self.topic_path(topic), ok_statuses=(404,))

    def create_subscription(
        self,
        subscription: str,
        topic: str,
        *,
        push_endpoint: str | None = None,
        ack_deadline_seconds: int = 60,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
    ) -> str:
        path = self.subscription_path(subscription)
        body: dict[str, Any] = {"topic": self.topic_path(topic), "ackDeadlineSeconds": ack_deadline_seconds}
        if push_endpoint is not None:
            body["pushConfig"] = {"pushEndpoint": push_endpoint}
        if dead_letter_topic is not None:
            body["deadLetterPolicy"] = {
                "deadLetterTopic": self.topic_path(dead_letter_topic),
                "maxDeliveryAttempts": max_delivery_attempts,
            }
        self._call("PUT", path, body)
        return path

    def delete_subscription(self, subscription: str) -> None:
        self._call("DELETE", self.subscription_path(subscription), ok_statuses=(404,))

    def publish(
        self, topic: str, data: bytes | str | Mapping[str, Any], attributes: Mapping[str, str] | None = None
    ) -> str:
        if isinstance(data, Mapping):
            payload = json.dumps(data).encode()
        elif isinstance(data, str):
            payload = data.encode()
        else:
            payload = bytes(data)
        message: dict[str, Any] = {"data": base64.b64encode(payload).decode("ascii")}
        if attributes:
            bad = {key: value for key, value in attributes.items() if not isinstance(value, str)}
            if bad:
                raise TypeError(f"Pub/Sub attribute values must be str: {bad!r}")
            message["attributes"] = dict(attributes)
        result = self._call("POST", f"{self.topic_path(topic)}:publish", {"messages": [message]})
        return str(result["messageIds"][0])

    def pull_once(self, subscription: str, max_messages: int) -> list[Event]:
        """One non-blocking pull (``returnImmediately``: a blocking pull may hang ~90 s); acks what it got."""
        path = self.subscription_path(subscription)
        result = self._call(
            "POST", f"{path}:pull", {"maxMessages": max(1, max_messages), "returnImmediately": True}
        )
        received = result.get("receivedMessages", [])
        if received:
            self._call("POST", f"{path}:acknowledge", {"ackIds": [r["ackId"] for r in received]})
        return [Event.from_received(r) for r in received]

    def pull(self, subscription: str, n: int, timeout: float, *, allow_fewer: bool = False) -> list[Event]:
        """Pull (and ack) until ``n`` messages arrived; after ``timeout``: ``PullTimeout``, or what arrived
        if ``allow_fewer``."""
        deadline = time.monotonic() + timeout
        events: list[Event] = []
        while len(events) < n:
            events.extend(self.pull_once(subscription, n - len(events)))
            if len(events) >= n:
                break
            if time.monotonic() >= deadline:
                if allow_fewer:
                    break
                raise PullTimeout(
                    f"only {len(events)} of {n} messages arrived on {subscription} within {timeout} s: "
                    f"{[e.data for e in events]!r}",
                    events,
                )
            time.sleep(0.1)
        return events

    def drain(self, subscription: str, wait: float) -> list[Event]:
        """Everything that arrives on ``subscription`` during ``wait`` seconds (acked)."""
        deadline = time.monotonic() + wait
        events: list[Event] = []
        while True:
            events.extend(self.pull_once(subscription, 100))
            if time.monotonic() >= deadline:
                return events
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


@dataclasses.dataclass
class Event:
    """A message pulled from a subscription."""

    data: Any  # decoded JSON, or the raw bytes when the payload is not JSON
    attributes: dict[str, str]
    message_id: str
    publish_time: str
    raw: bytes
    delivery_attempt: int | None = None

    @classmethod
    def from_received(cls, received: Mapping[str, Any]) -> Event:
        message = received.get("message", {})
        raw = base64.b64decode(message.get("data", ""))
        data: Any
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            data = raw
        attempt = received.get("deliveryAttempt")
        return cls(
            data=data,
            attributes=dict(message.get("attributes", {})),
            message_id=str(message.get("messageId", "")),
            publish_time=str(message.get("publishTime", "")),
            raw=raw,
            delivery_attempt=int(attempt) if attempt is not None else None,
        )


class Tap:
    """An extra pull subscription on a topic (e.g. to observe the requests a function publishes to itself)."""

    def __init__(self, rest: PubSubRest, subscription: str) -> None:
        self._rest = rest
        self.subscription = subscription

    def pull(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        return self._rest.pull(self.subscription, n, timeout, allow_fewer=allow_fewer)

    def drain(self, wait: float) -> list[Event]:
        """Everything arriving within ``wait`` seconds."""
        return self._rest.drain(self.subscription, wait)

    def delete(self) -> None:
        self._rest.delete_subscription(self.subscription)
