"""Stage 3: standalone training of the searched architectures, Self-KD against a baseline.

``trainer`` trains one model (with or without the Self-KD teacher), ``peers`` holds the
hand-designed reference models, ``energy`` wraps training in codecarbon's offline tracker,
``export`` writes and reads TorchScript / ONNX models, ``run`` is the stage itself, ``stage``
its runner for ``salnas run`` and ``cli`` its ``salnas distill`` command.
"""
