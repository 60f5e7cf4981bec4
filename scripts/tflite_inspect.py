#!/usr/bin/env python3
"""Describes a .tflite file as JSON, read with TFLite's own Python flatbuffer classes (the
`schema_py_generated` module ai-edge-litert ships) and loaded in LiteRT's interpreter; used by
effnet's TFLite export tests to check the structure of what it writes.

    python3 scripts/tflite_inspect.py MODEL.tflite

Prints {"version", "description", "operators": [BUILTIN names in order], "op_versions",
"inputs"/"outputs": [{"name", "shape", "shape_signature", "type", "scales", "zero_points"}],
"tensor_types": {type: count}, "metadata": {name: text}, "signatures": [keys],
"interpreter_ops": [op names LiteRT built]}. Exit status 3: ai-edge-litert is not installed.
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        print(f"ai-edge-litert unavailable: {e}", file=sys.stderr)
        return 3
    data = open(sys.argv[1], "rb").read()
    if not schema.Model.ModelBufferHasIdentifier(data, 0):
        print("not a TFLite flatbuffer (identifier TFL3 missing)", file=sys.stderr)
        return 1
    model = schema.Model.GetRootAs(data, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    graph = model.Subgraphs(0)
    ops = [codes[graph.Operators(i).OpcodeIndex()] for i in range(graph.OperatorsLength())]

    def tensor(index):
        t = graph.Tensors(index)
        q = t.Quantization()
        return {
            "name": t.Name().decode(),
            "shape": t.ShapeAsNumpy().tolist() if t.ShapeLength() else [],
            "shape_signature": t.ShapeSignatureAsNumpy().tolist() if t.ShapeSignatureLength() else None,
            "type": type_names[t.Type()],
            "scales": q.ScaleAsNumpy().tolist() if q is not None and q.ScaleLength() else [],
            "zero_points": q.ZeroPointAsNumpy().tolist() if q is not None and q.ZeroPointLength() else [],
        }

    types = {}
    for i in range(graph.TensorsLength()):
        name = type_names[graph.Tensors(i).Type()]
        types[name] = types.get(name, 0) + 1
    metadata = {}
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        metadata[m.Name().decode()] = model.Buffers(m.Buffer()).DataAsNumpy().tobytes().decode()
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    print(json.dumps({
        "version": model.Version(),
        "description": (model.Description() or b"").decode(),
        "operators": [op_names[c.BuiltinCode()] for c in ops],
        "op_versions": {op_names[c.BuiltinCode()]: c.Version() for c in codes},
        "inputs": [tensor(graph.Inputs(i)) for i in range(graph.InputsLength())],
        "outputs": [tensor(graph.Outputs(i)) for i in range(graph.OutputsLength())],
        "tensor_types": types,
        "metadata": metadata,
        "signatures": [model.SignatureDefs(i).SignatureKey().decode()
                       for i in range(model.SignatureDefsLength())],
        "interpreter_ops": [d["op_name"] for d in interpreter._get_ops_details()],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
