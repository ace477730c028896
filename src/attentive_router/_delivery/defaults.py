"""The delivery defaults the command line shows before it delivers anything.

Its help texts and ``config init`` quote them; kept apart from ``sender`` so that building the
argument parser imports no HTTP client. Imports nothing.
"""

DEFAULT_BASE_URL = "https://api.attentivemobile.com"
"""Attentive's API root."""

DEFAULT_CONCURRENCY = 128
"""Requests on the wire at once (see ``SenderSettings.concurrency``)."""
