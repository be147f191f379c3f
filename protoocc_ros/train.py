"""``python -m protoocc_ros.train`` / ``protoocc-train``: thin entry point of protoocc_ros.tools.train."""
from __future__ import annotations

import sys

from protoocc_ros.tools.train import main

if __name__ == "__main__":
    sys.exit(main())
