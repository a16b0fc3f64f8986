"""Training of the beat classifiers (PyTorch, CPU): data, model families, loop, ONNX export.

Needs the ``train`` extra (``pip install -e '.[train]'``); the live path never imports it.
"""
