"""The sandbox: a local Attentive server for tests, the benchmark and the demo.

``server`` answers like Attentive's REST API and validates every body against the project's
schemas; ``faults`` injects the failures delivery must survive; ``process`` runs it as a child
process with ``child``, the runner shared with the command line's ``ServeProcess``. Imports only
the transform.
"""
