"""Train a YOLO student with Inconsistent Knowledge Distillation. See `python run.py --help` and README.md."""

import sys

from ikd_yolo.cli import main

if __name__ == "__main__":
    sys.exit(main())
