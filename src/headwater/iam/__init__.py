"""Identity and access management: Segment's roles, who holds them on what, and the decision
whether a principal may read or change an area of the workspace (§20).

The decision (``access``) is pure; the stores keep users, groups, API tokens, permissions and
labels in the state database. The REST API authenticates a request to a ``Principal`` and asks
it before every route runs.
"""
