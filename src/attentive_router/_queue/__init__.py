"""The queue stage: where events wait between intake and delivery.

``interface`` is the contract every backend keeps (states, claims, settlements); ``sqlite`` is
the embedded backend; ``intake`` turns read items into queue entries. Imports only the transform.
"""
