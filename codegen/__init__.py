"""Code generator: ``spec/*.csv`` → typed transform functions and the mapping docs.

Flow: CSV rows → validated frozen objects (``spec``; every bad row reported at once, with its
line and column) → a plan that resolves each output key against the project's JSON Schema
(``plan``) → strict Jinja2 templates → ruff-formatted, ``ast``-parsed Python (``render``).
It reads the hand-written modules it refers to as text (``ast``), never importing the package
it generates into, so a stale or broken generated module can always be regenerated.
"""
