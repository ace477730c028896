"""The command line: ``attentive-router`` and its commands. The top stage: may import any other.

``main`` parses the arguments and runs ``transform``, ``sandbox`` and ``demo``; ``delivery`` holds
``send``, ``deliver``, ``check`` and ``dead-letters``; ``events`` lists the queue's events by
state (a run's skipped and rejected ones); ``serve`` the ingest server's options;
``demo`` is ``make run``; ``summary`` counts outcomes for the end-of-run table; ``serve_process``
runs ``serve`` as a child process for tests, the benchmark and the demo.
"""
