"""protoocc_ros: ProtoOcc (CVPR 2025) 3D semantic occupancy prediction as a ROS 2 package.

The generated message module ``protoocc_ros.msg`` is built by rosidl into an install prefix
(``install/protoocc_ros`` here, the colcon workspace on a ROS install). Extending ``__path__``
lets that generated part and this source tree form one package.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
