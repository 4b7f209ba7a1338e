"""Presigned file URLs: S3-style query parameters, an HMAC-SHA256 signature, and expiry.

Owns how the sandbox signs an object path and how it decides a download is allowed. The shape
copies S3's SigV4 query string (so clients see the URLs they will see in production, with a
secret in the query string that must never be logged); the signature itself is a plain HMAC over
method, path, date and lifetime, which is all a sandbox needs to detect tampering and expiry.
Like SigV4, it covers the HTTP method: a URL presigned for GET refuses HEAD, PUT, POST and DELETE
with ``SignatureDoesNotMatch``, so a client that works here does not rely on anything S3 refuses.
Never imports dagster.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlencode

ALGORITHM = "AWS4-HMAC-SHA256"
#: The one method file URLs are presigned for (the API hands out download links only).
SIGNED_METHOD = "GET"
ACCESS_KEY = "SANDBOXACCESSKEY"
REGION = "us-east-1"
#: S3 refuses presigned URLs that claim a longer lifetime than a week.
MAX_EXPIRES_S = 7 * 24 * 3600
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
QUERY_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)


@dataclass(frozen=True)
class Refusal:
    """Why a presigned URL was refused, in S3's words (code and message)."""

    code: str
    message: str


EXPIRED = Refusal("AccessDenied", "Request has expired")
BAD_SIGNATURE = Refusal(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided.",
)
MALFORMED = Refusal(
    "AccessDenied", "Query-string authentication requires the X-Amz-* signature parameters."
)


@dataclass(frozen=True)
class Signer:
    """Signs and verifies object paths with a server-side secret."""

    secret: bytes

    def _signature(self, method: str, path: str, amz_date: str, expires: str) -> str:
        # Sign the decoded path so clients that normalise percent-escapes still verify.
        message = "\n".join([ALGORITHM, method, amz_date, expires, unquote(path)])
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, ttl_s: int, now: float | None = None) -> str:
        """The query string (without ``?``) that allows a GET of ``path`` for ``ttl_s`` seconds.

        ``now`` (epoch seconds) defaults to the wall clock; pass an earlier time to hand out URLs
        that are already expired.
        """
        moment = datetime.fromtimestamp(int(time.time() if now is None else now), UTC)
        amz_date = moment.strftime(AMZ_DATE_FORMAT)
        expires = str(int(ttl_s))
        credential = f"{ACCESS_KEY}/{moment:%Y%m%d}/{REGION}/s3/aws4_request"
        return urlencode(
            {
                "X-Amz-Algorithm": ALGORITHM,
                "X-Amz-Credential": credential,
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": expires,
                "X-Amz-SignedHeaders": "host",
                "X-Amz-Signature": self._signature(SIGNED_METHOD, path, amz_date, expires),
            }
        )

    def verify(
        self, method: str, path: str, query: Mapping[str, str], now: float | None = None
    ) -> Refusal | None:
        """``None`` if ``method`` on ``path`` with ``query`` is allowed now, else the refusal.

        Any method but the signed one fails the signature check, as with SigV4.
        """
        if any(name not in query for name in QUERY_PARAMS) or query["X-Amz-Algorithm"] != ALGORITHM:
            return MALFORMED
        amz_date, expires = query["X-Amz-Date"], query["X-Amz-Expires"]
        expected = self._signature(method, path, amz_date, expires)
        if not hmac.compare_digest(expected, query["X-Amz-Signature"]):
            return BAD_SIGNATURE
        try:
            signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
            lifetime = int(expires)
        except ValueError:
            return MALFORMED
        if not 0 <= lifetime <= MAX_EXPIRES_S:
            return MALFORMED
        current = time.time() if now is None else now
        if current > signed_at.timestamp() + lifetime:
            return EXPIRED
        return None
