"""Warehouses and the data lake: every event in tables a Segment user already queries.

``naming`` (Segment's snake_case, Redshift's rules) and ``rows`` (an event as rows of
``tracks``, ``<event>``, ``identifies``, ``users``… with Segment's columns) are pure; ``loaders``
write rows into DuckDB or PostgreSQL in bulk; ``sync`` decides what each warehouse still
needs from the archive and records the runs; ``lake`` writes Parquet partitions.
"""
