"""The manifest: what one request put in a series' folder, instance by instance, written once.

It holds no timestamps, so every delivery of the same request writes the same bytes; a manifest with
other content (the series grew, an archive round added instances) is stored as the next version
(`manifest.2.json`, ...), never over the first (worker.storage.write_json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.layout import MANIFEST_NAME, SeriesFolder
from worker.models import StoredObject, is_uid
from worker.ports import ObjectStore

MANIFEST_VERSION = "1"


@dataclass(frozen=True)
class Copied:
    """One instance safely in the bucket: a manifest entry."""

    sop_uid: str
    sop_class_uid: str | None
    object_name: str
    size: int
    crc32c: str
    transfer_syntax: str | None
    uploaded: bool

    @classmethod
    def from_manifest(cls, folder: SeriesFolder, item: object) -> Copied | None:
        """A manifest entry read back (an instance an earlier delivery copied); None when malformed.
        The object name follows the layout, whatever the entry says."""
        if not isinstance(item, dict):
            return None
        uid, size, crc32c = item.get("sopInstanceUID"), item.get("size"), item.get("crc32c")
        if (
            not is_uid(uid)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or not isinstance(crc32c, str)
        ):
            return None
        assert isinstance(uid, str)
        sop_class, transfer_syntax = item.get("sopClassUID"), item.get("transferSyntaxUID")
        return cls(
            uid,
            sop_class if is_uid(sop_class) else None,
            folder.instance(uid),
            size,
            crc32c,
            transfer_syntax if is_uid(transfer_syntax) else None,
            uploaded=False,
        )

    def as_manifest(self) -> dict[str, Any]:
        return {
            "sopInstanceUID": self.sop_uid,
            "sopClassUID": self.sop_class_uid,
            "object": self.object_name,
            "size": self.size,
            "crc32c": self.crc32c,
            "transferSyntaxUID": self.transfer_syntax,
        }


def manifest_body(
    folder: SeriesFolder, requested_transfer_syntax: str, copied: list[Copied], request_id: str
) -> dict[str, Any]:
    series = folder.series
    return {
        "manifestVersion": MANIFEST_VERSION,
        "requestId": request_id,
        "series": series.source,
        "sourceStore": series.store_name,
        "studyInstanceUID": series.study_uid,
        "seriesInstanceUID": series.series_uid,
        "destination": folder.uri,
        "requestedTransferSyntax": requested_transfer_syntax,
        "instanceCount": len(copied),
        "bytes": sum(item.size for item in copied),
        "instances": [item.as_manifest() for item in sorted(copied, key=lambda item: item.sop_uid)],
    }


def write_manifest(
    storage: ObjectStore,
    folder: SeriesFolder,
    requested_transfer_syntax: str,
    copied: list[Copied],
    request_id: str,
) -> StoredObject:
    """Write the manifest create-only, as a new version when one with other content is there."""
    body = manifest_body(folder, requested_transfer_syntax, copied, request_id)
    return storage.write_json(folder.bucket, folder.record(MANIFEST_NAME), body)


@dataclass(frozen=True)
class FoundManifest:
    stored: StoredObject
    body: dict[str, Any]


def latest_manifest(storage: ObjectStore, folder: SeriesFolder) -> FoundManifest | None:
    """The newest manifest this worker wrote in the folder for the same series of the same store."""
    for stored in reversed(storage.json_versions(folder.bucket, folder.record(MANIFEST_NAME))):
        found = _read_manifest(storage, folder, stored)
        if found is not None:
            return found
    return None


def copied_by(found: list[FoundManifest], folder: SeriesFolder, request_id: str) -> dict[str, Copied]:
    """The entries of the manifests one request wrote (a newer one's winning): what its earlier
    deliveries copied and checked."""
    entries: dict[str, Copied] = {}
    for each in found:
        if each.body.get("requestId") != request_id:
            continue
        listed = each.body.get("instances")
        for item in listed if isinstance(listed, list) else []:
            entry = Copied.from_manifest(folder, item)
            if entry is not None:
                entries[entry.sop_uid] = entry
    return entries


def manifests(storage: ObjectStore, folder: SeriesFolder) -> list[FoundManifest]:
    """Every manifest this worker wrote in the folder for the same series of the same store, oldest
    first."""
    versions = storage.json_versions(folder.bucket, folder.record(MANIFEST_NAME))
    found = [_read_manifest(storage, folder, stored) for stored in versions]
    return [item for item in found if item is not None]


def _read_manifest(storage: ObjectStore, folder: SeriesFolder, stored: StoredObject) -> FoundManifest | None:
    series = folder.series
    body = storage.read_json(folder.bucket, stored.name)
    if (
        isinstance(body, dict)
        and body.get("sourceStore") == series.store_name
        and body.get("series") == series.source
        and isinstance(body.get("instanceCount"), int)
    ):
        return FoundManifest(stored, body)
    return None


@dataclass(frozen=True)
class Archived:
    """One instance of an archive as the restore and verify actions see it: its object's name in the
    series folder, and the size and CRC32C it must have (the manifest's entry, else the object's own)."""

    sop_uid: str
    object_name: str
    size: int
    crc32c: str


@dataclass(frozen=True)
class ArchiveContents:
    """A series folder read once: its newest manifest of the same series and store (if any), the
    instances its manifests list (else the `.dcm` objects there), and the folder's objects by name."""

    folder: SeriesFolder
    manifest: FoundManifest | None
    entries: dict[str, Archived]  # by SOP Instance UID
    objects: dict[str, StoredObject]  # by object name

    def stored(self, sop_uid: str) -> StoredObject | None:
        return self.objects.get(self.folder.instance(sop_uid))

    def damaged(self) -> list[tuple[str, str]]:
        """(SOP UID, problem) for every archived instance whose object is missing (`object_missing`) or
        has another size or CRC32C than its entry (`object_differs`), in UID order."""
        found: list[tuple[str, str]] = []
        for uid, entry in sorted(self.entries.items()):
            stored = self.stored(uid)
            if stored is None:
                found.append((uid, "object_missing"))
            elif (stored.size, stored.crc32c) != (entry.size, entry.crc32c):
                found.append((uid, "object_differs"))
        return found


def read_archive(storage: ObjectStore, folder: SeriesFolder) -> ArchiveContents:
    """The folder's manifests and objects. The entries are those of every manifest of the same series
    and store, a newer one's entry winning for the same instance: an archive or retrieve redelivered
    part-way writes one manifest per delivery, each listing what that delivery handled, so the newest
    alone may list only the last few instances. Object names always follow the layout (`{sop}.dcm` in
    the folder), whatever a manifest says, so a manifest cannot point anywhere else; entries without a
    valid UID, size or CRC32C are left out. Without a manifest, the folder's `.dcm` objects."""
    objects = {item.name: item for item in storage.list(folder.location)}
    found = manifests(storage, folder)
    manifest = found[-1] if found else None
    entries: dict[str, Archived] = {}
    if found:
        for each in found:
            listed = each.body.get("instances")
            for item in listed if isinstance(listed, list) else []:
                entry = _entry(folder, item)
                if entry is not None:
                    entries[entry.sop_uid] = entry
    else:
        prefix = folder.name + "/"
        for name, stored in objects.items():
            uid = name[len(prefix) : -len(".dcm")] if name.endswith(".dcm") else ""
            if name.startswith(prefix) and is_uid(uid) and folder.instance(uid) == name:
                entries[uid] = Archived(uid, name, stored.size, stored.crc32c)
    return ArchiveContents(folder, manifest, entries, objects)


def _entry(folder: SeriesFolder, item: object) -> Archived | None:
    copied = Copied.from_manifest(folder, item)
    if copied is None:
        return None
    return Archived(copied.sop_uid, copied.object_name, copied.size, copied.crc32c)
