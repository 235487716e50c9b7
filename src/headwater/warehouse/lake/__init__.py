"""The data lake: Segment Data Lakes' Parquet layout, in a local directory or on S3.

``targets`` is where files go (a directory, an S3 bucket), ``seen_ids`` remembers written
messageIds for the 7-day dedupe, and ``writer`` runs a sync: Parquet partitions, the tables'
schemas and Segment's sync reports. This package exports what the warehouse sync needs.
"""

from headwater.warehouse.lake.seen_ids import SqliteSeenIds
from headwater.warehouse.lake.targets import LakeTarget, open_target
from headwater.warehouse.lake.writer import FINISHED, LakeRun, LakeSync

__all__ = ["FINISHED", "LakeRun", "LakeSync", "LakeTarget", "SqliteSeenIds", "open_target"]
