"""Print what the network makes of an ONNX file (the info a registration records), or why it
refuses it, without registering anything.

    python show_info.py [my-model.onnx]
"""

import sys
from pathlib import Path

from gpu.onnx_models import inspect_model

path = sys.argv[1] if len(sys.argv) > 1 else "my-model.onnx"
print(inspect_model(Path(path).read_bytes()))
