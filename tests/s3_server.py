"""An S3-compatible server for the tests: moto in server mode on 127.0.0.1, one per session.

``warehouse_url`` runs a test against a local folder and against ``s3://`` on that server, with
the standard AWS variables pointing at it (so the code under test configures nothing special).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import s3fs
from moto.server import ThreadedMotoServer

BUCKET = "aperiodic-warehouse"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch, tmp_path) -> str:
    """The AWS environment of a client of that server, and its bucket; returns the endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # No shared config or credential files, and never the instance metadata service.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws_config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws_credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return s3_endpoint


@pytest.fixture(params=["local", "s3"])
def warehouse_url(request, tmp_path) -> str:
    """A fresh, empty warehouse: a local folder, or a prefix of its own in the moto bucket."""
    if request.param == "local":
        return str(tmp_path / "warehouse")
    request.getfixturevalue("s3_env")
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"
