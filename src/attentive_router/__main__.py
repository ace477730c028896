"""``python -m attentive_router``: the command line."""

import sys

from attentive_router._cli.main import main

sys.exit(main())
