"""ONNX models: manifests, sessions, the face path and the scoring interface."""
