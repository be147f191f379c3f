"""The runtime every node runs on; imports no other part of ros/ (docs/architecture.md "ROS interfaces").

lifecycle.py (ManagedNode, run_managed_node, LifecycleClient); params.py (the one declare / read / validate /
live-change mechanism of the parameter dataclasses); diagnostics.py (/diagnostics: rates, latency, drops,
OK/WARN/ERROR); qos.py (sensor, reliable, latched, TF profiles); dds.py (the Fast DDS profile for large
messages); spin.py (spin loops that end cleanly on Ctrl-C / SIGTERM, a private rclpy context); typesupport.py
(message libraries preloaded so a plain shell works); inference_worker.py (the worker thread with a bounded queue
that drops the oldest set).
"""
