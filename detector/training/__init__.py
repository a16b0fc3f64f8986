"""Training of the beat classifiers (PyTorch, CPU): data, model families, loop, ONNX export.

Needs the ``train`` extra (``pip install -e '.[train]'``); the live path never imports it.
"""

# The cosine learning-rate schedule's length unless `ecgmon train --epochs` says otherwise
# (torch-free, so the CLI's help can show it without PyTorch).
DEFAULT_EPOCHS = 10
