"""Unify: identity resolution into profiles (Segment's word for it).

- ``spaces``: spaces, their sources, Profile API access tokens and Profiles Sync setting
  (``SpaceStore``, ``authenticate``)
- ``insights``: Profiles Insights, what resolution refused or did (``Insights``: ``record_many``
  in the stage's transaction, ``search``, ``purge``)
- ``csv_upload``: profile CSV uploads: Segment's checks, rows as Identify calls, the space's
  upload source and the Update History (``Uploads``)
- ``commands``: ``headwater insights`` and ``headwater profiles upload|template``

The pure core of identity resolution, without storage of its own:

- ``settings``: a space's identity settings (identifiers, limits, priorities, blocked values)
- ``identifiers``: the identifiers an event carries under those settings
- ``ingestion``: the events Unify drops before resolving them
- ``profile_ids``: ``use_…`` profile ids
- ``graph``: the ``GraphStore`` protocol resolution reads and writes through, and its records
- ``memory``: ``MemoryGraph``, the in-memory graph (tests; the reference for SQL stores)
- ``resolution``: the ``Resolver``, Segment's matching and merge algorithm
"""
