"""Action `sweep`: the series of a store that match the filters, one `then` request published per series.

The store is listed by worker.enumeration (partitioned past the server's paging limits, in date order),
the same listing as the CLI's `fan-out` of a store. Each page's requests are published together through
the publisher's batching client and waited on before the next page; a child's requestId is derived from
the sweep's and the series (worker.sweep_request.child_request_id), the same on every delivery.

Near the deadline the sweep hands itself on with its cursor (where the listing stands) and the count
published so far, in a signed follow-up. A redelivered sweep (a delivery that failed or was killed)
starts again from the cursor its message carries, so it may publish again requests it published
before: every series action is idempotent (a repeated archive finds the series archived or absent,
retrieve's create-only objects are skipped when equal, delete finds the series absent, restore skips
equal instances, search and verify only read, tier sets the same class again), and the repeats carry the
same requestId. The completion event counts `seriesCount` (series listed) and `published` over every
delivery of the sweep.
"""

from __future__ import annotations

import json
import logging

from worker.enumeration import Enumeration, SearchLimits
from worker.errors import Code, PermanentError
from worker.job import Outcome, SweepJob

log = logging.getLogger(__name__)

HAND_ON_MARGIN_SECONDS = 20.0  # no new page is listed this close to the deadline


def sweep(job: SweepJob) -> Outcome:
    request = job.request
    topic = job.settings.request_topic
    if topic is None:
        raise PermanentError(
            Code.REQUEST_TOPIC_MISSING, "sweep publishes its requests onto REQUEST_TOPIC, which is not set"
        )
    limits = SearchLimits(job.settings.search_page_size, job.settings.search_max_offset)
    enumeration = Enumeration(job.ports.dicomweb, request.store, request.filters, limits)
    published = request.published
    for page in enumeration.pages(request.cursor):
        if page.series:
            messages = []
            for series in page.series:
                child = request.child(series)
                data = json.dumps(child.as_json(), separators=(",", ":")).encode("utf-8")
                messages.append((data, {"action": str(child.action), "requestId": child.request_id}))
            published += job.ports.publisher.publish_batch(topic, messages)
        if page.cursor is None:
            break
        if job.remaining() < HAND_ON_MARGIN_SECONDS:
            log.info("sweep handed on", extra={"published": published})
            return job.hand_on("deadline", cursor=page.cursor, published=published)
    log.info("sweep listed every series", extra={"published": published})
    return {"seriesCount": published, "published": published}
