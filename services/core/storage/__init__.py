"""Storage of uploaded files: a local directory or S3; tasks carry only references."""

from services.core.storage.base import FileTooLarge, Storage, StoredFile, make_storage

__all__ = ["FileTooLarge", "Storage", "StoredFile", "make_storage"]
