"""The Aperiodic data API client; the rest of the package imports its names from here.

client.py makes the requests (AperiodicClient), retrying.py decides how hard each call tries
(RetryConfig), errors.py holds what can go wrong, files.py what a listing or a download hands
back and how much of a URL may be shown. Importing this package installs the filter that keeps
presigned signatures out of urllib3's logs. Never imports dagster.
"""

from __future__ import annotations

from .client import DEFAULT_ALLOWED_HOSTS, DEFAULT_API_URL, AperiodicClient
from .errors import (
    AperiodicError,
    ApiError,
    AuthError,
    BadRequestError,
    DisallowedHostError,
    DownloadRejectedError,
    NotFoundError,
    PlanError,
    TransientError,
    UrlExpiredError,
)
from .files import FileInfo, FileStamp, SourceFile, file_token, files_identity, redact
from .retrying import RETRYABLE_STATUS, RetryConfig

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "DEFAULT_API_URL",
    "RETRYABLE_STATUS",
    "AperiodicClient",
    "AperiodicError",
    "ApiError",
    "AuthError",
    "BadRequestError",
    "DisallowedHostError",
    "DownloadRejectedError",
    "FileInfo",
    "FileStamp",
    "NotFoundError",
    "PlanError",
    "RetryConfig",
    "SourceFile",
    "TransientError",
    "UrlExpiredError",
    "file_token",
    "files_identity",
    "redact",
]
