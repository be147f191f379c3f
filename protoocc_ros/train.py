"""``python -m protoocc_ros.train`` / ``protoocc-train``: thin entry point of protoocc_ros.training.train."""
from __future__ import annotations

import sys

from protoocc_ros.training.train import main

if __name__ == "__main__":
    sys.exit(main())
