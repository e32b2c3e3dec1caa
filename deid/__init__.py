"""deid: de-identify DICOM scans by configurable HIPAA Safe Harbor profiles."""

__version__ = "0.1.0"
