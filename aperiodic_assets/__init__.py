"""aperiodic-assets: a validated, monthly-partitioned Parquet warehouse of Aperiodic l1_imbalance data."""
