"""What occupancy_node receives, up to one decoded camera set (docs/architecture.md "Data flow").

sync.py (message_filters' ApproximateTimeSynchronizer: one image per camera within the slop); camera_inputs.py
(a set's inputs: CameraInfo by stamp, size check, decoding, rectification, extrinsics and ego pose from TF);
rectification.py (CameraInfo checks, distortion models: image_proc's rectify); image_conversion.py (cv_bridge:
Image / CompressedImage <-> numpy, both directions); tf_buffer.py (tf2_ros Buffer + TransformListener).
"""
