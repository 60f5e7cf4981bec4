#!/usr/bin/env python3
"""Runs an ONNX model in ONNX Runtime (CPU) on a raw float32 input; used by effnet's export tests.

    python3 scripts/onnx_run.py MODEL.onnx INPUT.f32 N,C,H,W OUTPUT.f32

INPUT.f32 holds N*C*H*W little-endian float32 values (NCHW); the first graph output is written
to OUTPUT.f32 the same way. When the `onnx` package is installed the model is first validated
with onnx.checker (full_check: shape inference included). An int8 input (effnet's QDQ export
with --input-type int8) is quantised with the model's `input.scale`/`input.zero_point`, an int8
output dequantised with `logits.scale`/`logits.zero_point` (these need `onnx`). Exit status 3 means onnxruntime or
numpy is not installed (`pip install onnxruntime numpy onnx`).
"""
import sys


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    model, inp, shape, out = sys.argv[1:]
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnxruntime unavailable: {e}", file=sys.stderr)
        return 3
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        onnx.checker.check_model(onnx.load(model), full_check=True)
        print(f"onnx.checker: ok (onnx {onnx.__version__})")
    dims = [int(d) for d in shape.split(",")]
    x = np.fromfile(inp, dtype="<f4").reshape(dims)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    consts = {}
    if "int8" in inputs[0].type or "int8" in outputs[0].type:
        from onnx import numpy_helper

        consts = {t.name: numpy_helper.to_array(t) for t in onnx.load(model).graph.initializer}
    if "int8" in inputs[0].type:
        scale, zero = float(consts["input.scale"]), int(consts["input.zero_point"])
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    (y,) = session.run(None, {inputs[0].name: x})[:1]
    if "int8" in outputs[0].type:
        scale, zero = float(consts["logits.scale"]), int(consts["logits.zero_point"])
        y = (y.astype(np.float32) - zero) * scale
    np.ascontiguousarray(y, dtype="<f4").tofile(out)
    print(f"onnxruntime {ort.__version__}: output {list(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
