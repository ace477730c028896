"""The Kafka backend of the queue: topics under a prefix, a consumer group of delivery workers.

``settings`` reads ``kafka://`` addresses; ``codec`` writes and reads the records; ``topics``
creates them; ``intake`` writes accepted events (``serve``); ``work`` is the delivery side of a
worker of the consumer group; ``dead_letters`` reads and replays the dead-letter topic; ``view``
reads the events topic, the group's lag and the dead letters for the console, outside the group.
aiokafka is imported only here, and only when a Kafka queue is used.
"""
