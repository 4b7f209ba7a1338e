"""Dagster resources: thin, configurable wrappers around the pure client and warehouse.

Configuration comes from the environment through ``EnvVar`` (see definitions.py), so the API key
is never part of run config or the event log.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.resources import ResourceWithS3Configuration
from pydantic import Field

from ..core.api import DEFAULT_ALLOWED_HOSTS, DEFAULT_API_URL, AperiodicClient, RetryConfig
from ..core.warehouse import Warehouse

_RETRY_SETTINGS = {setting.name: setting for setting in fields(RetryConfig)}


def _mirror(name: str) -> Any:
    """A config field with the default and description of RetryConfig's setting ``name``."""
    setting = _RETRY_SETTINGS[name]
    return Field(default=setting.default, description=setting.metadata["description"])


class RetrySettings(dg.Config):
    """RetryConfig as Dagster config, so each setting can be changed per deployment or run."""

    max_attempts: int = _mirror("max_attempts")
    backoff_initial_s: float = _mirror("backoff_initial_s")
    backoff_max_s: float = _mirror("backoff_max_s")
    jitter_s: float = _mirror("jitter_s")
    retry_after_max_s: float = _mirror("retry_after_max_s")
    budget_s: float = _mirror("budget_s")
    connect_timeout_s: float = _mirror("connect_timeout_s")
    read_timeout_s: float = _mirror("read_timeout_s")

    def to_retry_config(self) -> RetryConfig:
        """The settings for the pure client: the one place config becomes a RetryConfig."""
        return RetryConfig(**self.model_dump())


class AperiodicResource(dg.ConfigurableResource):
    """The Aperiodic API (or the local sandbox, which is only another URL)."""

    api_url: str = Field(default=DEFAULT_API_URL, description="APERIODIC_API_URL")
    api_key: str = Field(default="", description="APERIODIC_API_KEY; a secret, set via EnvVar")
    allowed_hosts: list[str] = Field(
        default=list(DEFAULT_ALLOWED_HOSTS),
        description="Hosts presigned download URLs may point at (the API's own host is added).",
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings,
        description="How hard each API call tries: attempts, backoff, time budget, timeouts.",
    )
    max_file_bytes: int = 512 * 1024 * 1024
    max_concurrent_downloads: int = 4

    def get_client(
        self,
        logger: logging.Logger | None = None,
        client_tag: str | None = None,
        max_connections: int | None = None,
    ) -> AperiodicClient:
        """A client; ``max_connections``: threads that share it (default: its download limit)."""
        return AperiodicClient(
            self.api_url,
            self.api_key,
            retry=self.retry.to_retry_config(),
            allowed_hosts=self.allowed_hosts,
            max_file_bytes=self.max_file_bytes,
            max_concurrent_downloads=self.max_concurrent_downloads,
            max_connections=max_connections,
            client_tag=client_tag,
            logger=logger,
        )


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse: a local folder or ``s3://bucket/prefix`` (WAREHOUSE_URL)."""

    url: str = Field(default="warehouse", description="WAREHOUSE_URL")
    s3: S3Resource | None = Field(
        default=None,
        description="S3 settings shared by the code location (endpoint, region, profile,"
        " credentials) for an s3:// url; unset fields fall back to the standard AWS"
        " configuration (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...).",
    )

    def get_warehouse(self) -> Warehouse:
        on_s3 = self.s3 is not None and self.url.startswith("s3://")
        return Warehouse(self.url, storage_options=s3_storage_options(self.s3) if on_s3 else None)


def s3_storage_options(s3: ResourceWithS3Configuration) -> dict[str, Any]:
    """dagster-aws S3 settings as s3fs arguments; unset ones are left to botocore's defaults."""
    client_kwargs = {"region_name": s3.region_name, "verify": s3.verify}
    options: dict[str, Any] = {
        "endpoint_url": s3.endpoint_url,
        "profile": s3.profile_name,
        "key": s3.aws_access_key_id,
        "secret": s3.aws_secret_access_key,
        "token": s3.aws_session_token,
        "anon": s3.use_unsigned_session or None,
        "use_ssl": None if s3.use_ssl else False,
        "client_kwargs": {k: v for k, v in client_kwargs.items() if v is not None} or None,
        "config_kwargs": {"retries": {"max_attempts": s3.max_attempts}},
    }
    return {k: v for k, v in options.items() if v is not None}
