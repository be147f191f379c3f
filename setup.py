"""Python packaging of protoocc_ros (metadata and entry points live in setup.cfg).

On a ROS 2 install the package is built by colcon through CMakeLists.txt (messages + this Python
package); here, setup.py gives an editable install with the console scripts.
"""
from setuptools import setup

setup()
