"""Edge inference: the assigned models score each batch of frames before it is stored (see ``engine``).

``alerts`` turns an anomaly model's scores into raised and cleared alerts, ``drift`` compares what is scored with
the model card's training statistics, ``stream`` turns a device's frames into input rows, and ``runtime`` (numpy,
onnxruntime; imported when the first model loads) loads packages and runs them.
"""

from edge.inference.config import InferenceConfig
from edge.inference.engine import InferenceEngine, LocalAssignment

__all__ = ["InferenceConfig", "InferenceEngine", "LocalAssignment"]
