"""Synthetic DICOM instances (pydicom) and STOW-RS seeding, for the local stack, tests and benchmarks."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

PATIENT_NAME = "Doe^Jane^Synthetic"  # tests assert that this never reaches a log line or an event


@dataclass(frozen=True)
class Series:
    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]


def make_instance(
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    *,
    number: int = 1,
    pixel_bytes: int = 512,
    patient_name: str = PATIENT_NAME,
) -> bytes:
    """One valid Part 10 Secondary Capture instance whose pixel data is `pixel_bytes` long."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient_name
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = "19700101"
    ds.Modality = "OT"
    ds.StudyDate = "20240102"
    ds.InstanceNumber = number
    side = max(1, int((pixel_bytes // 2) ** 0.5))
    ds.Rows = side
    ds.Columns = max(1, (pixel_bytes // 2) // side)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    length = ds.Rows * ds.Columns * 2
    pattern = sop_uid.encode()  # distinct bytes per instance, so a mix-up cannot go unnoticed
    ds.PixelData = (pattern * (length // len(pattern) + 1))[:length]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_series(
    count: int, *, pixel_bytes: int = 512, study_uid: str | None = None
) -> tuple[Series, list[bytes]]:
    study = study_uid or generate_uid()
    series = generate_uid()
    sops = [generate_uid() for _ in range(count)]
    data = [
        make_instance(study, series, sop, number=i + 1, pixel_bytes=pixel_bytes) for i, sop in enumerate(sops)
    ]
    return Series(study, series, tuple(sops)), data


def multipart_body(parts: Iterable[bytes], boundary: str) -> Iterator[bytes]:
    for part in parts:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield part
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def stow(
    dicomweb_root: str, instances: list[bytes], *, batch: int = 50, auth: tuple[str, str] | None = None
) -> None:
    """Store instances with STOW-RS (POST {root}/studies), in batches."""
    with requests.Session() as session:
        session.trust_env = False
        for start in range(0, len(instances), batch):
            boundary = uuid.uuid4().hex
            body = b"".join(multipart_body(instances[start : start + batch], boundary))
            response = session.post(
                f"{dicomweb_root.rstrip('/')}/studies",
                data=body,
                headers={
                    "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                    "Accept": "application/dicom+json",
                },
                auth=auth,
                timeout=120,
            )
            response.raise_for_status()


def pydicom_test_series() -> tuple[Series, list[bytes]]:
    """Every DICOM file shipped in pydicom's test data that can be regrouped into one new series.

    Study, series and SOP instance UIDs are replaced; everything else, compressed pixel data included,
    is kept, so the series spans many transfer syntaxes (JPEG, JPEG 2000, JPEG-LS, RLE, deflate, big and
    little endian). Files that pydicom cannot write back unchanged in their own syntax are left out.
    """
    import glob
    import warnings
    from pathlib import Path

    import pydicom
    from pydicom import dcmread

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    study, series = generate_uid(), generate_uid()
    sops: list[str] = []
    data: list[bytes] = []
    for path in sorted(glob.glob(str(folder / "*.dcm"))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path)
                syntax = ds.file_meta.TransferSyntaxUID
                if "SOPClassUID" not in ds or "PixelData" not in ds:
                    continue
                sop = generate_uid()
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
                ds.file_meta.MediaStorageSOPInstanceUID = sop
                ds.InstanceNumber = len(data) + 1
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                if dcmread(io.BytesIO(buffer.getvalue())).file_meta.TransferSyntaxUID != syntax:
                    continue
        except Exception:  # pydicom's deliberately broken samples are left out
            continue
        sops.append(sop)
        data.append(buffer.getvalue())
    return Series(study, series, tuple(sops)), data
