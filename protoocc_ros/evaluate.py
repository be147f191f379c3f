"""``python -m protoocc_ros.evaluate`` / ``protoocc-eval``: thin entry point of protoocc_ros.evaluation.evaluate."""
from __future__ import annotations

import sys

from protoocc_ros.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
