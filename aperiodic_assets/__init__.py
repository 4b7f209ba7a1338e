"""aperiodic-assets: a validated, monthly-partitioned Parquet warehouse of Aperiodic data."""
