"""SQL traits (spec/unify-engage.md §6): a query run on a schedule against one of the
workspace's warehouses, one row per user (or account) with trait columns; every row whose values
changed since the previous run becomes an Identify (or Group) call from the space's Engage
source, and an identifier missing from a run gets its traits set to null.

``definitions`` keeps the traits (``SqlTraitStore``), ``results`` holds Segment's rules for a
query's result, ``messages`` makes the calls, ``runs`` runs a trait (and the scheduler the worker
calls, and the preview).
"""
