"""The transform stage: a Segment event in, one outcome out. Pure: no I/O, no clock, no globals.

``router`` dispatches an event to its mapping in ``generated`` (written by ``codegen/`` from
``spec/``), which builds typed bodies (``models``) with the value normalisers (``values``) and the
expressions (``expressions``); ``constraints`` checks Attentive's rules on whole bodies; ``outcome``
holds the results and ``json_form`` their JSON (``converter``, the cattrs converter, reads it
back). ``reader`` reads events from NDJSON, a JSON array or batch envelopes. Imports nothing from
the other stages.
"""
