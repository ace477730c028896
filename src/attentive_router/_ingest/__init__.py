"""The ingest stage: the Segment-compatible HTTP server (``serve``).

``parse`` turns request bodies into queue entries (pure); ``server`` is the Starlette application
with delivery in the same process; ``metrics`` and ``logs`` are what it reports. Imports delivery,
the queue and the transform.
"""
