"""The emulator's routes: every (HTTP method, path template) it serves, each named by the Healthcare API
method it stands for (the ``id`` in Google's discovery document ``healthcare.v1.json``).

The table is the router: a path that no template matches answers 404, a method that no route of a matching
template takes answers 405 with ``Allow``. ``tests/contract`` checks every route against the discovery
document (the method's ``flatPath`` and ``httpMethod``). Placeholders match one path segment without a
colon (UIDs and ids never hold one; ``{series}:getSeriesMetrics`` and ``{store}:import`` end in one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import ApiError

DATASET = "v1/projects/{project}/locations/{location}/datasets/{dataset}"
STORE = f"{DATASET}/dicomStores/{{store}}"
WEB = f"{STORE}/dicomWeb"
SERIES = f"{WEB}/studies/{{study}}/series/{{series}}"
INSTANCE = f"{SERIES}/instances/{{instance}}"

_PREFIX = "healthcare.projects.locations.datasets"
_STORES = f"{_PREFIX}.dicomStores"
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


@dataclass(frozen=True)
class Route:
    """One route: ``handler`` is the name of the ``DicomWebApi`` method that answers it."""

    method: str
    template: str  # "v1/projects/{project}/.../dicomWeb/studies/{study}", without a leading slash
    google_method: str  # the discovery document's method id
    handler: str
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = ""
        last = 0
        for match in _PLACEHOLDER.finditer(self.template):
            regex += re.escape(self.template[last : match.start()]) + f"(?P<{match[1]}>[^/:]+)"
            last = match.end()
        regex += re.escape(self.template[last:])
        object.__setattr__(self, "pattern", re.compile(regex))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


ROUTES: tuple[Route, ...] = (
    # QIDO-RS
    Route("GET", f"{WEB}/studies", f"{_STORES}.searchForStudies", "search_studies"),
    Route("GET", f"{WEB}/series", f"{_STORES}.searchForSeries", "search_series"),
    Route("GET", f"{WEB}/instances", f"{_STORES}.searchForInstances", "search_instances"),
    Route("GET", f"{WEB}/studies/{{study}}/series", f"{_STORES}.studies.searchForSeries", "search_series"),
    Route(
        "GET",
        f"{WEB}/studies/{{study}}/instances",
        f"{_STORES}.studies.searchForInstances",
        "search_instances",
    ),
    Route("GET", f"{SERIES}/instances", f"{_STORES}.studies.series.searchForInstances", "search_instances"),
    # STOW-RS
    Route("POST", f"{WEB}/studies", f"{_STORES}.storeInstances", "store_instances"),
    Route("POST", f"{WEB}/studies/{{study}}", f"{_STORES}.studies.storeInstances", "store_instances"),
    # WADO-RS
    Route("GET", f"{WEB}/studies/{{study}}", f"{_STORES}.studies.retrieveStudy", "retrieve_resource"),
    Route("GET", SERIES, f"{_STORES}.studies.series.retrieveSeries", "retrieve_resource"),
    Route("GET", INSTANCE, f"{_STORES}.studies.series.instances.retrieveInstance", "retrieve_resource"),
    Route(
        "GET", f"{WEB}/studies/{{study}}/metadata", f"{_STORES}.studies.retrieveMetadata", "retrieve_metadata"
    ),
    Route("GET", f"{SERIES}/metadata", f"{_STORES}.studies.series.retrieveMetadata", "retrieve_metadata"),
    Route(
        "GET",
        f"{INSTANCE}/metadata",
        f"{_STORES}.studies.series.instances.retrieveMetadata",
        "retrieve_metadata",
    ),
    Route(
        "GET", f"{INSTANCE}/rendered", f"{_STORES}.studies.series.instances.retrieveRendered", "unsupported"
    ),
    Route(
        "GET",
        f"{INSTANCE}/frames/{{frames}}",
        f"{_STORES}.studies.series.instances.frames.retrieveFrames",
        "unsupported",
    ),
    Route(
        "GET",
        f"{INSTANCE}/frames/{{frames}}/rendered",
        f"{_STORES}.studies.series.instances.frames.retrieveRendered",
        "unsupported",
    ),
    Route(
        "GET",
        f"{INSTANCE}/bulkdata/{{bulkdata}}/{{bulkdataPath}}",
        f"{_STORES}.studies.series.instances.bulkdata.retrieveBulkdata",
        "unsupported",
    ),
    # Delete (studies and series: long-running operations; instances: synchronous)
    Route("DELETE", f"{WEB}/studies/{{study}}", f"{_STORES}.studies.delete", "delete_resource"),
    Route("DELETE", SERIES, f"{_STORES}.studies.series.delete", "delete_resource"),
    Route("DELETE", INSTANCE, f"{_STORES}.studies.series.instances.delete", "delete_instance"),
    # Google's own methods
    Route(
        "GET", f"{SERIES}:getSeriesMetrics", f"{_STORES}.dicomWeb.studies.series.getSeriesMetrics", "metrics"
    ),
    Route("POST", f"{STORE}:import", f"{_STORES}.import", "import_dicom"),
    Route(
        "POST",
        f"{STORE}:setBlobStorageSettings",
        f"{_STORES}.setBlobStorageSettings",
        "set_blob_storage_settings",
    ),
    Route(
        "GET",
        f"{INSTANCE}:getStorageInfo",
        f"{_STORES}.dicomWeb.studies.series.instances.getStorageInfo",
        "storage_info",
    ),
    Route("GET", f"{DATASET}/operations/{{operation}}", f"{_PREFIX}.operations.get", "get_operation"),
)


def resolve(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route of a request and the values of its placeholders; ApiError 404 (no template matches the
    path) or 405 (no route of a matching template takes the method, with ``Allow``).

    ``path`` is percent-decoded, with or without a leading slash; empty segments are ignored."""
    normalized = "/".join(segment for segment in path.split("/") if segment)
    allowed: list[str] = []
    for route in ROUTES:
        params = route.match(normalized)
        if params is None:
            continue
        if route.method == method:
            return route, params
        allowed.append(route.method)
    if not allowed:
        raise ApiError(404, f"no Healthcare API resource at /{normalized}")
    raise ApiError(405, f"method {method} is not allowed on /{normalized}", [("Allow", ", ".join(allowed))])
