"""``python -m ikd_yolo ...``: the command line of ``python run.py`` and ``ikd-yolo`` (compare's runs start it)."""

import sys

from .cli import main

sys.exit(main())
