"""Exported models: a translation checkpoint as ONNX graphs (``onnx_export``), decoded with
onnxruntime through the same search and translator as the torch model (``onnx_runtime``)."""
