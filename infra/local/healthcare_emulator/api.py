"""The Healthcare API surface of the emulator: the handlers of DICOMweb (QIDO-RS, WADO-RS, STOW-RS, delete,
series metrics), of import, of storage classes and of operations. The routes are in ``routes`` (one
``route_<handler>`` method here per handler they name), media types in ``negotiation``, QIDO-RS queries in
``qido``, the Cloud Storage side of import in ``gcs_import``, storage classes in ``blob_storage``."""

from __future__ import annotations

import gc
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from .blob_storage import parse_set_blob_storage_request, storage_info
from .dicom import (
    ANY_TS,
    EXPLICIT_LE,
    IMPLICIT_LE,
    DicomError,
    JsonDict,
    can_transcode,
    parse_part10,
    transcode,
    transcode_message,
    with_bulk_uris,
)
from .errors import ApiError
from .gcs_import import parse_import_request
from .messages import Request, Response, error_response, json_response
from .multipart import part_head, split_multipart
from .negotiation import DICOM_JSON, check_json_accept, negotiate_retrieve, parse_media_type
from .qido import TRUNCATED_WARNING, parse_qido, search
from .records import Instance, Store
from .routes import ROUTES, Route, resolve
from .state import EmulatorState

_gc_lock = threading.Lock()
_gc_state = {"pauses": 0, "was_enabled": True}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a large answer is built: 50,000 small dicts otherwise trigger many
    full collections (seconds on a busy machine). Nested and concurrent uses are counted; the GC's
    state from before the first pause is restored after the last."""
    with _gc_lock:
        if _gc_state["pauses"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["pauses"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["pauses"] -= 1
            if _gc_state["pauses"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


# --------------------------------------------------------------------------------------------------
# The API


class DicomWebApi:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._random = random.Random()
        missing = sorted({route.handler for route in ROUTES if not hasattr(self, f"route_{route.handler}")})
        if missing:
            raise TypeError(f"routes name handlers DicomWebApi does not have: {missing}")

    def handle(self, req: Request) -> Response:
        try:
            return self._route(req)
        except ApiError as err:
            return error_response(err)

    # ---- routing (the table is in ``routes``)

    def _route(self, req: Request) -> Response:
        route, params = resolve(req.method, req.path)
        handler = getattr(self, f"route_{route.handler}")
        response: Response = handler(req, route, params)
        return response

    def _store(self, req: Request, params: dict[str, str]) -> tuple[Store, str]:
        """The store a route names and its DICOMweb root URL; ApiError 404 when it does not exist."""
        name = (
            f"projects/{params['project']}/locations/{params['location']}/datasets/{params['dataset']}"
            f"/dicomStores/{params['store']}"
        )
        return self.state.store(name), f"{req.base_url}/v1/{name}/dicomWeb"

    def route_search_studies(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.qido(req, store, root, "study", None, None)

    def route_search_series(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.qido(req, store, root, "series", params.get("study"), None)

    def route_search_instances(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.qido(req, store, root, "instance", params.get("study"), params.get("series"))

    def route_store_instances(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.stow(req, store, root, params.get("study"))

    def route_retrieve_resource(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.retrieve(req, store, root, params["study"], params.get("series"), params.get("instance"))

    def route_retrieve_metadata(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, root = self._store(req, params)
        return self.metadata(req, store, root, params["study"], params.get("series"), params.get("instance"))

    def route_unsupported(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        self._store(req, params)
        raise ApiError(501, f"the emulator does not implement {route.google_method.rsplit('.', 1)[-1]}")

    def route_delete_resource(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        return self.delete(req, store, params["study"], params.get("series"))

    def route_delete_instance(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        self.state.delete_instance(store, params["study"], params["series"], params["instance"])
        return json_response(200, {})

    def route_metrics(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        return self.series_metrics(store, params["study"], params["series"])

    def route_import_dicom(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        source = parse_import_request(req.body)
        op = self.state.start_import(store, source)
        with self.state.lock:
            return json_response(200, op.as_json(initial=True))

    def route_set_blob_storage_settings(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        request = parse_set_blob_storage_request(req.body)
        fault = req.fault
        if fault is not None:
            op = self.state.start_set_blob_storage(
                store, request, fault.operation_error, fault.operation_delay
            )
        else:
            op = self.state.start_set_blob_storage(store, request)
        with self.state.lock:
            return json_response(200, op.as_json(initial=True))

    def route_storage_info(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        store, _ = self._store(req, params)
        with self.state.lock:
            inst = store.sops.get(params["instance"])
            if inst is None or (inst.study, inst.series) != (params["study"], params["series"]):
                raise ApiError(404, f"instance {params['instance']} not found")
            return json_response(200, storage_info(store.name, inst))

    def route_get_operation(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        dataset = f"projects/{params['project']}/locations/{params['location']}/datasets/{params['dataset']}"
        op = self.state.operation(dataset, params["operation"])
        with self.state.lock:
            return json_response(200, op.as_json())

    # ---- QIDO-RS

    def qido(
        self, req: Request, store: Store, root: str, level: str, study: str | None, series: str | None
    ) -> Response:
        check_json_accept(req.accept)
        config = self.state.config
        query = parse_qido(req.query, level, config.qido_max_limit, config.qido_max_offset)
        with self.state.lock, gc_paused():
            page, more = search(store, root, query, level, study, series, self.state.config.qido_cap)
        agent = urlsplit(req.base_url).netloc
        headers = [("Warning", f'299 {agent}: "{text}"') for text in query.warnings]
        if more:
            headers.append(("Warning", f'299 {agent}: "{TRUNCATED_WARNING}"'))
        if not page:
            return Response(204, headers=headers)
        with gc_paused():
            resp = json_response(200, page, DICOM_JSON)
        resp.headers.extend(headers)
        return resp

    # ---- WADO-RS

    def _select(self, store: Store, study: str, series: str | None, sop: str | None) -> list[Instance]:
        with self.state.lock:
            series_map = store.studies.get(study)
            if series_map is None:
                raise ApiError(404, f"study {study} not found")
            if series is None:
                return [inst for sops in series_map.values() for inst in sops.values()]
            sops = series_map.get(series)
            if sops is None:
                raise ApiError(404, f"series {series} not found")
            if sop is None:
                return list(sops.values())
            inst = sops.get(sop)
            if inst is None:
                raise ApiError(404, f"instance {sop} not found")
            return [inst]

    @staticmethod
    def _plan(inst: Instance, ts: str) -> tuple[str, int | None, Callable[[], Iterator[bytes]]]:
        """(transfer syntax of the part, its size if known up front, its chunks)."""
        if ts in (ANY_TS, inst.transfer_syntax):
            return inst.transfer_syntax, inst.size, inst.chunks
        if inst.template is not None:
            uncompressed = (EXPLICIT_LE, IMPLICIT_LE)
            if inst.transfer_syntax in uncompressed and ts in uncompressed:
                variant = inst.template.variant(ts)
                number = inst.number or 0
                return ts, variant.size(inst.sop, number), lambda: variant.stream(inst.sop, number)
            raise ApiError(406, transcode_message(inst.transfer_syntax, ts))
        if not can_transcode(inst.transfer_syntax, ts):
            raise ApiError(406, transcode_message(inst.transfer_syntax, ts))
        return ts, None, lambda: iter([transcode(inst.read(), ts)])

    def retrieve(
        self, req: Request, store: Store, root: str, study: str, series: str | None, sop: str | None
    ) -> Response:
        instances = self._select(store, study, series, sop)
        multipart, ts = negotiate_retrieve(req.accept, single_part=sop is not None)
        plans = [self._plan(inst, ts) for inst in instances]
        if not multipart:
            part_ts, size, chunks = plans[0]
            body = self._counted(chunks(), 1)
            if size is None:
                data = b"".join(body)
                return Response(200, data, f"application/dicom; transfer-syntax={part_ts}")
            return Response(200, body, f"application/dicom; transfer-syntax={part_ts}", length=size)
        boundary = uuid.uuid4().hex
        quoting = self.state.config.boundary_quoting
        quoted = quoting == "quoted" or (quoting == "random" and self._random.random() < 0.5)
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        if quoted:
            content_type = f'multipart/related; type="application/dicom"; boundary="{boundary}"'
        closing = f"--{boundary}--\r\n".encode()
        length: int | None = len(closing)
        for part_ts, size, _ in plans:
            if size is None or length is None:
                length = None
            else:
                length += len(part_head(boundary, part_ts, size)) + size + 2
        return Response(200, self._multipart(boundary, plans, closing), content_type, length=length)

    def _multipart(
        self,
        boundary: str,
        plans: list[tuple[str, int | None, Callable[[], Iterator[bytes]]]],
        closing: bytes,
    ) -> Iterator[bytes]:
        for part_ts, size, chunks in plans:
            if size is None:
                data = b"".join(chunks())
                yield part_head(boundary, part_ts, len(data))
                yield from self._counted(iter([data]), 1)
            else:
                yield part_head(boundary, part_ts, size)
                yield from self._counted(chunks(), 1)
            yield b"\r\n"
        yield closing

    def _counted(self, chunks: Iterator[bytes], instances: int) -> Iterator[bytes]:
        total = 0
        try:
            for chunk in chunks:
                total += len(chunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self.state.count_served(total, instances)

    def metadata(
        self, req: Request, store: Store, root: str, study: str, series: str | None, sop: str | None
    ) -> Response:
        check_json_accept(req.accept)
        instances = self._select(store, study, series, sop)
        out = [
            with_bulk_uris(
                inst.attrs(), f"{root}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"
            )
            for inst in instances
        ]
        return json_response(200, out, DICOM_JSON)

    # ---- STOW-RS

    def stow(self, req: Request, store: Store, root: str, study: str | None) -> Response:
        media = parse_media_type(req.headers.get("Content-Type", ""))
        if media.type == "multipart/related":
            boundary = media.params.get("boundary")
            part_type = media.params.get("type", "application/dicom").strip().lower()
            if not boundary:
                raise ApiError(400, "multipart/related request without a boundary")
            if part_type != "application/dicom":
                raise ApiError(415, f"the emulator stores only application/dicom parts, not {part_type!r}")
            parts = split_multipart(req.body, boundary)
        elif media.type == "application/dicom":
            parts = [({"content-type": "application/dicom"}, req.body)]
        else:
            raise ApiError(
                415, 'STOW-RS takes multipart/related; type="application/dicom" or application/dicom'
            )
        if not parts or not any(content for _, content in parts):
            raise ApiError(400, "STOW-RS request without any instance")
        stored: list[JsonDict] = []
        failed: list[JsonDict] = []
        studies: set[str] = set()
        for headers, content in parts:
            part_media = parse_media_type(headers.get("content-type", "application/dicom"))
            if part_media.type != "application/dicom":
                failed.append({"00081197": {"vr": "US", "Value": [0xC000]}})
                continue
            try:
                parsed = parse_part10(content)
            except DicomError:
                failed.append({"00081197": {"vr": "US", "Value": [0xC000]}})
                continue
            ref: JsonDict = {
                "00081150": {"vr": "UI", "Value": [parsed.sop_class]},
                "00081155": {"vr": "UI", "Value": [parsed.sop]},
            }
            if study is not None and parsed.study != study:
                failed.append({**ref, "00081197": {"vr": "US", "Value": [0xA900]}})
                continue
            try:
                self.state.store_instance(store, parsed, content)
            except ApiError as err:
                reason = 0x0111 if "already exists" in err.message else 0x0110
                failed.append({**ref, "00081197": {"vr": "US", "Value": [reason]}})
                continue
            studies.add(parsed.study)
            url = f"{root}/studies/{parsed.study}/series/{parsed.series}/instances/{parsed.sop}"
            stored.append({**ref, "00081190": {"vr": "UR", "Value": [url]}})
        body: JsonDict = {}
        if len(studies) == 1:
            body["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{next(iter(studies))}"]}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": [dict(sorted(item.items())) for item in failed]}
        if stored:
            body["00081199"] = {"vr": "SQ", "Value": stored}
        status = 200 if not failed else 409 if not stored else 202
        return json_response(status, body, DICOM_JSON)

    # ---- delete and metrics

    def delete(self, req: Request, store: Store, study: str, series: str | None) -> Response:
        fault = req.fault
        if fault is not None:
            op = self.state.start_delete(store, study, series, fault.operation_error, fault.operation_delay)
        else:
            op = self.state.start_delete(store, study, series, None)
        with self.state.lock:
            return json_response(200, op.as_json(initial=True))

    def series_metrics(self, store: Store, study: str, series: str) -> Response:
        with self.state.lock:
            sops = store.series_instances(study, series)
            if sops is None:
                raise ApiError(404, f"series {series} not found")
            return json_response(
                200,
                {
                    "series": f"{store.name}/dicomWeb/studies/{study}/series/{series}",
                    "structuredStorageSizeBytes": str(sum(64 * len(i.base_attrs) for i in sops.values())),
                    "blobStorageSizeBytes": str(sum(i.size for i in sops.values())),
                    "instanceCount": str(len(sops)),
                },
            )
