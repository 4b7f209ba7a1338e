"""What the client hands out about files, and how much of a file's URL may ever be shown.

Owns the file list's entries (FileInfo), downloaded files (SourceFile), a published file's
identity without its body (FileStamp, files_identity), and redaction: ``redact`` for our own
messages and a filter, installed on import, that strips query strings (presigned signatures)
from urllib3's request logs. Never imports dagster.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pyarrow as pa

_QUERY = re.compile(r"\?[^\s\"']*")


def redact(url: str) -> str:
    """``host/path`` of a URL, without scheme credentials or the query string (the signature)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{(':' + str(parts.port)) if parts.port else ''}{parts.path}"


class _RedactQueryStrings(logging.Filter):
    """urllib3 logs request lines with the full URL at DEBUG: drop query strings (signatures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryStrings())


@dataclass(frozen=True)
class FileInfo:
    """One entry of the file list; ``day`` is set for daily files."""

    year: int
    month: int
    day: int | None
    url: str = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}" + (f"-{self.day:02d}" if self.day else "")

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Monthly file first, then the month's daily files, as Aperiodic serves them."""
        return (self.year, self.month, self.day or 0)


@dataclass(frozen=True)
class SourceFile:
    """A downloaded, length-checked, decodable source file.

    ``size`` is the stored object's size, the bytes on the wire (gzip-encoded ones included):
    what a probe's ``Content-Range`` reports, unlike ``len(data)``, the decoded bytes.
    """

    info: FileInfo
    data: bytes = field(repr=False)
    table: pa.Table = field(repr=False)
    etag: str | None
    size: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def token(self) -> str:
        """The file's identity, equal to the :class:`FileStamp` token of a probe of it."""
        return file_token(self.etag, self.size)


@dataclass(frozen=True)
class FileStamp:
    """What identifies a published file without downloading it: a republished file differs."""

    label: str
    etag: str
    size: int
    last_modified: str

    @property
    def token(self) -> str:
        return file_token(self.etag, self.size)


def file_token(etag: str | None, size: int) -> str:
    """A file's identity as a probe and a download both see it: ETag (unquoted) and size."""
    return f"{(etag or '').strip(chr(34))}:{size}"


def files_identity(tokens: Mapping[str, str]) -> str:
    """A short digest of a month's files (label -> :func:`file_token`): changes when one is
    republished."""
    text = "\n".join(f"{label} {token}" for label, token in sorted(tokens.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
