#!/usr/bin/env python3
"""Runs a .tflite model in LiteRT's interpreter (CPU, XNNPACK) on raw float32 NCHW images; used
by effnet's TFLite export tests.

    python3 scripts/tflite_run.py MODEL.tflite INPUT.f32 N,C,H,W OUTPUT.f32 [--reference]

INPUT.f32 holds N*C*H*W little-endian float32 values (NCHW, as effnet preprocesses them); they are
transposed to the model's NHWC input and, for a model with an int8 input, quantised with that
tensor's scale and zero point. The first output is dequantised when it is int8 and written to
OUTPUT.f32 as float32. A model whose batch differs from N is resized to N first. --reference uses
TFLite's builtin kernels without the XNNPACK delegate. Exit status 3 means ai-edge-litert or numpy
is not installed (`pip install ai-edge-litert numpy`).
"""
import sys


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    reference = "--reference" in sys.argv[1:]
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model, inp, shape, out = args
    try:
        import numpy as np
        from ai_edge_litert import interpreter as litert
    except ImportError as e:
        print(f"ai-edge-litert unavailable: {e}", file=sys.stderr)
        return 3
    dims = [int(d) for d in shape.split(",")]
    x = np.fromfile(inp, dtype="<f4").reshape(dims).transpose(0, 2, 3, 1)
    resolver = (
        litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if reference
        else litert.OpResolverType.AUTO
    )
    it = litert.Interpreter(
        model_path=model, num_threads=2, experimental_op_resolver_type=resolver
    )
    (inp_detail,) = it.get_input_details()
    if list(inp_detail["shape"]) != list(x.shape):
        it.resize_tensor_input(inp_detail["index"], list(x.shape))
    it.allocate_tensors()
    (inp_detail,) = it.get_input_details()
    if inp_detail["dtype"] == np.int8:
        scale, zero = inp_detail["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
    it.set_tensor(inp_detail["index"], np.ascontiguousarray(x, dtype=inp_detail["dtype"]))
    it.invoke()
    out_detail = it.get_output_details()[0]
    y = it.get_tensor(out_detail["index"])
    if out_detail["dtype"] == np.int8:
        scale, zero = out_detail["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    np.ascontiguousarray(y, dtype="<f4").tofile(out)
    import ai_edge_litert

    version = getattr(ai_edge_litert, "__version__", "?")
    kernels = "builtin kernels" if reference else "XNNPACK"
    print(f"ai-edge-litert {version} ({kernels}): input {inp_detail['dtype'].__name__} "
          f"{list(x.shape)}, output {list(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
