"""A deployment: one function with its own topics and subscriptions, shaped like production."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from .function import FunctionServer
from .processes import LOOPBACK, PROJECT, StackError, base_env
from .pubsub import Event, PubSubRest, Tap

if TYPE_CHECKING:
    from .stack import Stack


class Deployment:
    """One function with its own topics and subscriptions, shaped like the production deployment.

    ``requests-N`` --push subscription ``requests-N-push`` (dead-letter policy)--> the function;
    ``completions-N`` --> pull subscription ``completions-N-pull``;
    ``dead-letters-N`` --> pull subscription ``dead-letters-N-pull``.
    """

    def __init__(
        self,
        stack: Stack,
        index: int,
        env: Mapping[str, str],
        *,
        source: str | Path,
        target: str,
        max_delivery_attempts: int,
        ack_deadline_seconds: int,
        signature_type: str = "cloudevent",
    ) -> None:
        if stack.pubsub is None:
            raise StackError("a deployment needs the Pub/Sub emulator")
        self.stack = stack
        self.index = index
        self.rest = PubSubRest(stack.pubsub.url, PROJECT)
        self.project = PROJECT
        self.request_topic = self.rest.topic_path(f"requests-{index}")
        self.completion_topic = self.rest.topic_path(f"completions-{index}")
        self.dead_letter_topic = self.rest.topic_path(f"dead-letters-{index}")
        self.push_subscription = self.rest.subscription_path(f"requests-{index}-push")
        self.completion_subscription = self.rest.subscription_path(f"completions-{index}-pull")
        self.dead_letter_subscription = self.rest.subscription_path(f"dead-letters-{index}-pull")
        self.max_delivery_attempts = max_delivery_attempts
        self.ack_deadline_seconds = ack_deadline_seconds
        self._taps: list[Tap] = []
        self._tap_counter = itertools.count(1)
        self._stopped = False

        function_env = base_env(
            {
                "PUBSUB_EMULATOR_HOST": stack.pubsub.host,
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "COMPLETION_TOPIC": self.completion_topic,
                "REQUEST_TOPIC": self.request_topic,
                # The key that signs this deployment's follow-ups (worker/continuation.py); a test that
                # forges or replays one reads it from deployment.env.
                "CONTINUATION_KEYS": f"local={os.urandom(32).hex()}",
                "DICOMWEB_AUTH": "none",
                "PYTHONUNBUFFERED": "1",
                # Keep google-auth away from the metadata server (never leave loopback).
                "NO_GCE_CHECK": "true",
                "GCE_METADATA_HOST": f"{LOOPBACK}:9",
                "GCE_METADATA_IP": f"{LOOPBACK}:9",
            }
        )
        if stack.gcs is not None:
            function_env["STORAGE_EMULATOR_HOST"] = stack.gcs.url
        if stack.healthcare is not None:
            function_env["HEALTHCARE_API_URL"] = stack.healthcare.url
        function_env.update(env)
        self.env = function_env
        self.function = FunctionServer(
            stack.run_dir,
            function_env,
            source=source,
            target=target,
            signature_type=signature_type,
            name=f"function-{index}",
        )

    def _deploy(self, timeout: float) -> None:
        for topic in (self.request_topic, self.completion_topic, self.dead_letter_topic):
            self.rest.create_topic(topic)
        self.rest.create_subscription(self.completion_subscription, self.completion_topic)
        self.rest.create_subscription(self.dead_letter_subscription, self.dead_letter_topic)
        self.function.start(timeout)
        # The push path names the topic so functions-framework sets the CloudEvent source from it.
        topic_suffix = self.request_topic  # projects/P/topics/T
        self.rest.create_subscription(
            self.push_subscription,
            self.request_topic,
            push_endpoint=f"{self.function.url}/{topic_suffix}",
            ack_deadline_seconds=self.ack_deadline_seconds,
            dead_letter_topic=self.dead_letter_topic,
            max_delivery_attempts=self.max_delivery_attempts,
        )

    @property
    def url(self) -> str:
        return self.function.url

    def publish(
        self, data: bytes | str | Mapping[str, Any], attributes: Mapping[str, str] | None = None
    ) -> str:
        """Publish to the request topic; dicts are JSON-encoded. Returns the message id."""
        return self.rest.publish(self.request_topic, data, attributes)

    def pull_events(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        """Pull and ack ``n`` completion events; ``PullTimeout`` if fewer arrive (unless ``allow_fewer``)."""
        return self.rest.pull(self.completion_subscription, n, timeout, allow_fewer=allow_fewer)

    def no_more_events(self, wait: float = 2.0) -> list[Event]:
        """The completion events arriving within ``wait`` seconds (a test asserts this is empty)."""
        return self.rest.drain(self.completion_subscription, wait)

    def pull_dead_letters(self, n: int, timeout: float = 60, *, allow_fewer: bool = False) -> list[Event]:
        return self.rest.pull(self.dead_letter_subscription, n, timeout, allow_fewer=allow_fewer)

    def no_more_dead_letters(self, wait: float = 2.0) -> list[Event]:
        return self.rest.drain(self.dead_letter_subscription, wait)

    def tap_requests(self) -> Tap:
        """A new pull subscription on the request topic: sees every request published after this call."""
        subscription = self.rest.subscription_path(f"requests-{self.index}-tap-{next(self._tap_counter)}")
        self.rest.create_subscription(subscription, self.request_topic)
        tap = Tap(self.rest, subscription)
        self._taps.append(tap)
        return tap

    def stop(self) -> None:
        """Delete the push subscription first (no more pushes), stop the function, delete the rest."""
        if self._stopped:
            return
        self._stopped = True
        self.stack._forget(self)
        errors: list[BaseException] = []
        pubsub_up = self.stack.pubsub is not None and self.stack.pubsub.running
        if pubsub_up:
            with contextlib.suppress(StackError, requests.RequestException):
                self.rest.delete_subscription(self.push_subscription)
        try:
            self.function.stop()
        except StackError as error:
            errors.append(error)
        if pubsub_up:
            with contextlib.suppress(StackError, requests.RequestException):
                for tap in self._taps:
                    tap.delete()
                for subscription in (self.completion_subscription, self.dead_letter_subscription):
                    self.rest.delete_subscription(subscription)
                for topic in (self.request_topic, self.completion_topic, self.dead_letter_topic):
                    self.rest.delete_topic(topic)
        if errors:
            raise errors[0]
