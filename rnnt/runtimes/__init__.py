"""Backends that run the three exported networks behind `rnnt.decoding.Runtime`.

Each backend lives in its own module and imports only its own runtime package, so the
ONNX Runtime and OpenVINO backends deploy without torch.
"""
