"""``python -m obpipeline.cli``: the same as the ``obpipeline`` command."""

import sys

from obpipeline.cli import main

sys.exit(main())
