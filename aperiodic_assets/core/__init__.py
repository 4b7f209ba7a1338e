"""The pure layer: the API client, normalization, validation, the warehouse and the sensor's
decisions, as plain Python over pyarrow. Nothing here imports Dagster (ruff's TID251 bans it
for this folder), so all of it runs and is tested without a Dagster instance.
"""
