"""Command-line tools of protoocc_ros (entry points in setup.cfg): info, demo, make-sample, render, doctor."""
