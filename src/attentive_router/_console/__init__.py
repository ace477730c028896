"""The operator console: a small web interface that ``serve`` mounts under ``/console``.

It shows each event's fate (live events, with the requests sent and Attentive's answers), a
delivery overview per destination and endpoint, the dead letters (and replays them), and a
mapping tester that runs the transform on a pasted event without sending anything.
"""
