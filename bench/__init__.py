"""The benchmark of the DICOM series worker on the local stack: `python -m bench.run` (`make bench`)."""
