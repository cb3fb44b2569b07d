"""Installs zwz's torchvision compatibility layer in child Python processes (e.g. vLLM workers).

zwz.compat puts this folder on PYTHONPATH; Python imports ``sitecustomize`` at start-up. Any other
``sitecustomize`` further down the path is still run afterwards.
"""

import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    from zwz import compat

    compat.install()
except ImportError:  # zwz or transformers not importable in this interpreter: nothing to patch
    pass

# Chain to the next sitecustomize, as if this one were not there.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules["sitecustomize"]
try:
    importlib.import_module("sitecustomize")
except ImportError:
    pass
finally:
    sys.path.insert(0, _here)
