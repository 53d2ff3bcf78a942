"""Training models for the edge: data from a file or a device's stored history, an MLP exported to ONNX, INT8
quantization, FP32 and INT8 evaluated side by side, and a model package with its card.

Nothing here is imported by the cloud service: scikit-learn, skl2onnx, onnx, onnxruntime and pyarrow (the ``train``
extra) are loaded by ``twincloud model train`` when it runs. The features come from ``shared.features`` and the
input rows from ``shared.modelschema``: the code the edge scores with.
"""
