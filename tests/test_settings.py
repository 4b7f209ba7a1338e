"""Settings from the environment: a wrong value stops with the variable's name, its value and
what is expected; a mistyped warehouse URL is refused instead of becoming a local folder."""

from __future__ import annotations

import pytest

from aperiodic_assets.core.settings import (
    check_warehouse_url,
    env_cron,
    env_float,
    env_int,
    env_owners,
)


def test_unset_or_empty_variables_give_the_default():
    assert env_int("APERIODIC_SENSOR_INTERVAL_S", 3600, environ={}) == 3600
    assert env_int("APERIODIC_SENSOR_INTERVAL_S", 3600, environ={"X": "1"}) == 3600
    env = {"APERIODIC_SENSOR_BUDGET_S": " "}
    assert env_float("APERIODIC_SENSOR_BUDGET_S", 25.0, environ=env) == 25.0


def test_set_variables_are_parsed():
    env = {"APERIODIC_SENSOR_INTERVAL_S": " 600 ", "APERIODIC_SENSOR_BUDGET_S": "12.5"}
    assert env_int("APERIODIC_SENSOR_INTERVAL_S", 3600, environ=env) == 600
    assert env_float("APERIODIC_SENSOR_BUDGET_S", 25.0, environ=env) == 12.5


def test_the_process_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("APERIODIC_SENSOR_CONCURRENCY", "3")
    assert env_int("APERIODIC_SENSOR_CONCURRENCY", 8) == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1h", "APERIODIC_SENSOR_INTERVAL_S='1h' is not a whole number of seconds"),
        ("3600.0", "APERIODIC_SENSOR_INTERVAL_S='3600.0' is not a whole number of seconds"),
        ("0", "APERIODIC_SENSOR_INTERVAL_S='0' must be at least 1"),
    ],
)
def test_a_wrong_whole_number_names_the_variable_value_and_unit(value, message):
    env = {"APERIODIC_SENSOR_INTERVAL_S": value}
    with pytest.raises(ValueError) as error:
        env_int("APERIODIC_SENSOR_INTERVAL_S", 3600, minimum=1, environ=env)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("value", ["25s", "nan", "inf"])
def test_a_wrong_number_names_the_variable_and_the_default(value):
    env = {"APERIODIC_SENSOR_BUDGET_S": value}
    with pytest.raises(
        ValueError, match=r"APERIODIC_SENSOR_BUDGET_S=.* is not a number of seconds"
    ):
        env_float("APERIODIC_SENSOR_BUDGET_S", 25.0, environ=env)
    with pytest.raises(ValueError, match=r"e\.g\. APERIODIC_SENSOR_BUDGET_S=25\.0, the default"):
        env_float("APERIODIC_SENSOR_BUDGET_S", 25.0, environ=env)


def test_a_variable_without_a_unit_suffix_is_just_a_number():
    with pytest.raises(
        ValueError, match=r"^APERIODIC_SENSOR_CONCURRENCY='eight' is not a whole number \("
    ):
        env_int(
            "APERIODIC_SENSOR_CONCURRENCY", 8, environ={"APERIODIC_SENSOR_CONCURRENCY": "eight"}
        )


@pytest.mark.parametrize(
    "url",
    [
        "warehouse",
        "./data/warehouse",
        "/srv/aperiodic/warehouse",
        "./a:b",
        "file:///srv/aperiodic/warehouse",
        "s3://bucket",
        "s3://my-bucket.example/aperiodic/warehouse",
    ],
)
def test_local_folders_file_and_s3_urls_are_accepted_unchanged(url):
    assert check_warehouse_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:/bucket/x", r"s3: is not followed by //; did you mean s3://bucket/x\?"),
        ("s3:bucket/x", r"did you mean s3://bucket/x\?"),
        ("S3://bucket/x", r"schemes are lowercase here; write s3://bucket/x"),
        ("gs://bucket/x", r"gs:// is not a supported warehouse"),
        ("memory://warehouse", r"memory:// is not a supported warehouse"),
        ("s3://", r"'' is not a valid S3 bucket name"),
        ("s3:///x", r"'' is not a valid S3 bucket name"),
        ("s3://My_Bucket/x", r"'My_Bucket' is not a valid S3 bucket name"),
        ("file://data/warehouse", r"a file URL takes an absolute path"),
        (" s3://bucket/x", r"leading or trailing spaces"),
        ("", r"is empty"),
    ],
)
def test_mistyped_warehouse_urls_are_refused_with_the_variable_named(url, message):
    with pytest.raises(ValueError, match=message) as error:
        check_warehouse_url(url)
    assert str(error.value).startswith(f"WAREHOUSE_URL={url!r}")


@pytest.mark.parametrize("cron", ["0 6 1 * *", "*/15 0-6 * * MON-FRI", "5 4 L * ?"])
def test_a_cron_expression_of_five_fields_is_accepted(cron):
    assert env_cron("APERIODIC_SCHEDULE_CRON", "0 6 1 * *", environ={"X": "1"}) == "0 6 1 * *"
    env = {"APERIODIC_SCHEDULE_CRON": cron}
    assert env_cron("APERIODIC_SCHEDULE_CRON", "0 6 1 * *", environ=env) == cron


@pytest.mark.parametrize("cron", ["0 6 1 *", "hourly", "0 6 1 * * *", "0 6 1 * %"])
def test_a_mistyped_cron_expression_names_the_variable(cron):
    env = {"APERIODIC_SCHEDULE_CRON": cron}
    with pytest.raises(ValueError, match=r"APERIODIC_SCHEDULE_CRON=.* five fields"):
        env_cron("APERIODIC_SCHEDULE_CRON", "0 6 1 * *", environ=env)


def test_owners_are_teams_or_email_addresses_and_a_wrong_one_names_the_variable():
    env = {"APERIODIC_OWNERS": "team:quant, alice@example.com"}
    assert env_owners("APERIODIC_OWNERS", "team:x", environ=env) == [
        "team:quant",
        "alice@example.com",
    ]
    assert env_owners("APERIODIC_OWNERS", "team:x", environ={}) == ["team:x"]
    with pytest.raises(ValueError, match=r"APERIODIC_OWNERS='quant research': 'quant research'"):
        env_owners("APERIODIC_OWNERS", "team:x", environ={"APERIODIC_OWNERS": "quant research"})
