"""A local stand-in for the Cloud Healthcare API DICOMweb surface (development and tests; never deployed).

Run: ``python -m infra.local.healthcare_emulator --host 127.0.0.1 --port PORT --data-dir DIR
[--operation-delay SECONDS] [--absent-delete 404|operation] [--boundary-quoting quoted|unquoted|random]
[--storage-url http://127.0.0.1:PORT]``;
it prints ``READY http://127.0.0.1:PORT`` when listening (``--port 0`` picks a free port). In-process:
``emu = start_emulator("127.0.0.1", 0, tmp_path)``, then ``emu.url`` / ``emu.dicomweb_root(store)`` /
``emu.stop()``. It binds to loopback addresses only and sends no traffic anywhere.

Documented facts it implements (see shared/reference/healthcare-dicomweb.md):
- URL layout ``/v1/projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb/...``; operations at
  ``/v1/projects/P/locations/L/datasets/D/operations/ID``; errors as ``{"error": {"code", "message",
  "status"}}``.
- QIDO-RS on studies, series and instances at every path level; matching on UIDs (lists), Modality,
  StudyDate (``A-B`` ranges), PatientID, PatientName (wildcards) and a few others; ``includefield``
  (keyword, tag, ``all``); ``limit``/``offset``; default limits 100 (studies, series) and 1,000 (instances);
  maximum limits 5,000 and 50,000; offset above 1,000,000 answers 400; no match answers 204 with an empty
  body; stable insertion order.
- WADO-RS of a study, series or instance with Google's Accept negotiation: ``multipart/related;
  type="application/dicom"; transfer-syntax=X`` (``type`` quoted or not), X in 1.2.840.10008.1.2.1 (the
  default, also for a missing Accept or ``*/*``), 1.2.840.10008.1.2, .4.50, .4.90, .4.91 and ``*`` (stored
  bytes); quoting the whole ``type="application/dicom; transfer-syntax=X"`` answers 406 with Google's
  message listing the accepted combinations; single part ``application/dicom; transfer-syntax=...`` for an
  instance.
- Series and study delete return a long-running Operation (apiMethodName, createTime, counter, logsUrl) that
  is ``done`` after the operation delay, with ``response`` or ``error``; instances vanish at completion;
  storing into a series while its delete runs answers 409; instance delete is synchronous with ``{}``.
- ``:getSeriesMetrics`` (what the worker calls) with int64 fields as strings.
- The routes are a table (``routes.ROUTES``), each named by its method in Google's discovery document
  ``healthcare.v1.json``; ``tests/contract`` checks them against it. A path no route has answers 404, a
  method a path does not take 405 with ``Allow``.
- ``POST v1/{store}:import`` with ``{"gcsSource": {"uri": "gs://bucket/path"}}`` (``*``, ``?``, a final
  ``**`` or ``**.dcm``; a bad pattern or an unknown field answers 400) reads the matching objects from
  the Cloud Storage JSON API at ``--storage-url`` (fake-gcs-server; no credentials; loopback only) and
  returns an Operation (apiMethodName ``google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData``),
  done when every object is read and at least the operation delay has passed. An instance already in
  the store is skipped and counted in ``counter.success`` (the API "accepts duplicate DICOM instances by
  ignoring the newly-pushed instance"); an object that is not DICOM (or an instance of a series being
  deleted) counts in ``counter.failure``. Zero counters are left out (proto3 JSON).

Choices where the real behaviour is unconfirmed or not needed (change them here, not in clients):
- A limit above the maximum is clamped to it, with ``Warning: 299 host: "The limit exceeds the maximum
  ..."``; ``limit=0`` means the default. A page cut by the limit carries ``Warning: 299 host: "The number of
  results exceeded the maximum, additional results can be requested"``. An offset past the end answers 204.
- QIDO under an unknown study or series answers 204 (a search), WADO and metadata answer 404. Unknown search
  attributes or attributes of a lower level than the search answer 400.
- Default QIDO attributes follow PS3.18 Table 6.7.1-2 (study attributes, PatientName included, when the
  search is not scoped to a study; series attributes when not scoped to a series), plus StudyInstanceUID,
  StudyDate, SeriesInstanceUID and Modality at instance level and StudyInstanceUID and StudyDate at series
  level.
- STOW-RS of a SOP Instance UID already in the store stores nothing for it: a FailedSOPSequence item with
  FailureReason 0x0111 (duplicate). An instance of a series being deleted fails with 0x0110. All parts
  failed: 409; some: 202; none: 200 (DICOM JSON bodies, not Google error bodies). ``Content-Type:
  application/dicom`` (one bare instance) is accepted too.
- Transcoding: only what pydicom does without numpy or codecs: between implicit/explicit VR little endian
  (and from deflated or RLE Lossless). Anything else (JPEG, JPEG 2000, big endian, any compressed target)
  answers 406 ``emulator cannot transcode X to Y`` before any byte is sent. Transcoded parts are sent with
  chunked transfer encoding; stored bytes with an exact Content-Length computed from the sizes.
- Multipart boundaries are random hex, quoted or not at random per response (``boundaryQuoting`` config).
  Every part has ``Content-Type: application/dicom; transfer-syntax=...`` and ``Content-Length``.
- Delete of an absent study or series: 404 by default (``--absent-delete 404``), or an operation that ends
  with ``error: {"code": 5, "message": "... not found"}`` (``operation``). A successful operation's
  ``response`` is ``{}``. Operation ids are numeric strings; ``counter`` is ``{}`` at creation, then
  ``{"success": "N"}`` or ``{"failure": "1"}``; ``logsUrl`` is a console link that is never fetched.
- Import errors (the discovery document: "Returns an error if any of the files to import are not DICOM
  files"): no object matches, code 5 (NOT_FOUND; also a missing bucket); any object not imported, code 3
  (INVALID_ARGUMENT) with the counter still counting successes and failures; otherwise ``response`` is
  ``{"@type": "...ImportDicomDataResponse"}``. Without ``--storage-url`` import answers 501.
- Metadata gives PixelData (and other binary attributes over 1 KiB) as ``BulkDataURI`` under the instance
  URL (``.../bulkdata/TAG``, one segment: no route, so 404); frames, rendered and bulk data at Google's
  documented paths answer 501. ``structuredStorageSizeBytes`` of metrics is an estimate.
- ``includefield=all`` returns every attribute but bulk data at instance level, the patient/study (and
  series) attributes of the first instance at study (series) level. JSON answers are
  ``application/dicom+json; charset=utf-8`` (or ``application/json; charset=utf-8``); a method a resource does
  not take answers 405.

Emulator-only (admin) API, JSON in and out:
- ``POST /emulator/stores {"name": "projects/p/locations/l/datasets/d/dicomStores/s"}`` (idempotent), ``GET
  /emulator/stores``.
- ``POST /emulator/seed {"store", "study", "series", "count", "size"?, "transferSyntax"?, "start"?,
  "modality"?, "studyDate"?, "patientName"?, "patientId"?}``: N synthetic Part 10 instances, SOP UIDs
  ``{series}.{i}`` for i from ``start`` (default 1; a derived 2.25 UID when that exceeds 64 characters),
  instance number i. Only the index is kept; the bytes are generated on retrieve (deterministic), so huge
  series cost no disk. Answers ``{"count", "created", "skipped", "firstSopInstanceUid",
  "lastSopInstanceUid", "instanceSize", ...}``.
  With ``"seriesCount": N`` it seeds N series ``{series}.{k}`` (k from 1) of the study the same way and
  answers ``{"seriesCount", "created"}``. ``"studyDate": ""`` seeds a study without a date.
- ``POST /emulator/faults {"rules": [{"method", "path" (regex searched in the decoded path), "status",
  "retryAfter" (sent as whole seconds, rounded up), "times", "rate", "seed", "latency" (seconds before
  answering), "dropAfterBytes" (real headers, then the connection is cut after that many body bytes),
  "operationError" and "operationDelay" (for a DELETE of a study or series: how its operation ends, and
  when)}]}`` replaces the rules; ``GET`` lists them with ``fired`` counts; ``DELETE`` clears them. The first
  rule that fires applies; a rule with ``times`` fires that many times, one with ``rate`` at random.
- ``POST /emulator/config {"operationDelay", "absentDelete", "boundaryQuoting", "qidoCap", "qidoMaxLimit",
  "qidoMaxOffset"}``; ``GET /emulator/config``. ``qidoMaxLimit`` (> 0) lowers the page cap of study and
  series searches (5,000), ``qidoMaxOffset`` the largest offset accepted (1,000,000), so that tests reach
  the Healthcare API's limits with small stores.
- Empty value matching: ``StudyDate=""`` (two double quotes) matches studies without a date.
- ``GET /emulator/requests`` (``[{"method", "path", "query", "accept", "status", "faulted"}]`` of /v1
  requests), ``DELETE /emulator/requests``; ``POST /emulator/reset`` (stores, operations, faults, log,
  start-up config); ``GET /emulator/stats`` (``instanceBytesServed``, ``instancesServed``); ``GET
  /emulator/health``.

STOW'd instances are files under DIR/instances (wiped at start and reset); the index is in memory only.
"""

from .server import HealthcareEmulator, start_emulator

__all__ = ["HealthcareEmulator", "start_emulator"]
