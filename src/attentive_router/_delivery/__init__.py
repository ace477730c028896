"""The delivery stage: claim queued events, transform them and send them to Attentive.

``sender`` claims, transforms, sends and settles; ``ratelimit`` and ``retry`` hold Attentive's
limits and answer classes; ``job`` runs a whole delivery (queue a file, drain the queue) under
the queue's lock; ``progress`` draws the progress line. Imports the queue and the transform.
"""
