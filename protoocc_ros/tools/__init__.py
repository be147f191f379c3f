"""Command-line tools of protoocc_ros (entry points in setup.cfg): demo, doctor, export, train (protoocc-train), info,
make-sample, render, precompute-masks, foxglove, grid-echo; processes (child processes of the demo)."""
