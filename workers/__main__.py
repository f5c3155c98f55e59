"""`python -m workers`: one worker process, as started by `lq worker` (see `workers.process`)."""

import sys

from .process import main

sys.exit(main())
