//! Lowers a (BatchNorm-folded) [`EfficientNet`] to ONNX nodes and initializers, layer by layer,
//! tracking the spatial size so that every conv gets the explicit pads burn computes.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use effnet_model::{Activation, Block, EfficientNet, SqueezeExcite};

use crate::error::ExportError;
use crate::proto::{AttributeProto, NodeProto, TensorProto, attribute_proto, tensor_proto};

/// A value flowing through the graph: its name and spatial size `[h, w]`.
#[derive(Clone, Debug)]
pub struct Value {
    /// ONNX value name.
    pub name: String,
    /// Height and width of this NCHW value.
    pub hw: [usize; 2],
}

/// Nodes and weights of the graph under construction.
#[derive(Default)]
pub struct GraphBuilder {
    /// Nodes in topological order.
    pub nodes: Vec<NodeProto>,
    /// Weights and constants.
    pub initializers: Vec<TensorProto>,
    relu6_bounds: bool,
}

fn attr_ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An f32 initializer with raw little-endian data.
pub fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Float as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ExportError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ExportError::Unsupported(format!("weights not readable as f32 ({e:?})")))
}

/// `(begin, end)` padding of TensorFlow/burn "same": output `ceil(in / stride)`, extra pixel at
/// the end (bottom/right), like burn's `PaddingConfig2d::Same` and ONNX's `SAME_UPPER`.
fn same_pads(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// The one-line refusal for a layer the ONNX export does not write yet.
fn unsupported_layer(layer: &str) -> ExportError {
    ExportError::Unsupported(format!(
        "the ONNX export does not support {layer} layers yet (this model runs on the burn \
         engine only; see docs/models.md)"
    ))
}

/// `[top, left, bottom, right]` pads of `conv` for an input of size `hw`.
fn conv_pads(conv: &Conv2d, hw: [usize; 2]) -> [usize; 4] {
    match conv.padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
        PaddingConfig2d::Same => {
            let (t, b) = same_pads(hw[0], conv.kernel_size[0], conv.stride[0]);
            let (l, r) = same_pads(hw[1], conv.kernel_size[1], conv.stride[1]);
            [t, l, b, r]
        }
    }
}

impl GraphBuilder {
    fn push(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let output = format!("{name}:out");
        self.nodes.push(NodeProto {
            name: Some(name.into()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attrs,
            ..Default::default()
        });
        output
    }

    /// A `Conv` node with the module's weights, bias and explicit pads.
    pub fn conv(&mut self, name: &str, conv: &Conv2d, x: &Value) -> Result<Value, ExportError> {
        let weight = conv.weight.val();
        let dims = weight.dims();
        let w_name = format!("{name}.weight");
        self.initializers
            .push(f32_tensor(&w_name, &dims, &values(weight)?));
        let mut inputs = vec![x.name.as_str(), w_name.as_str()];
        let b_name = format!("{name}.bias");
        if let Some(bias) = &conv.bias {
            let bias = bias.val();
            self.initializers
                .push(f32_tensor(&b_name, &bias.dims(), &values(bias)?));
            inputs.push(&b_name);
        }
        let pads = conv_pads(conv, x.hw);
        let [kh, kw] = conv.kernel_size;
        let [sh, sw] = conv.stride;
        let [dh, dw] = conv.dilation;
        let out_hw = [
            (x.hw[0] + pads[0] + pads[2]).saturating_sub(dh * (kh - 1) + 1) / sh + 1,
            (x.hw[1] + pads[1] + pads[3]).saturating_sub(dw * (kw - 1) + 1) / sw + 1,
        ];
        let attrs = vec![
            attr_ints("kernel_shape", &conv.kernel_size),
            attr_ints("strides", &conv.stride),
            attr_ints("dilations", &conv.dilation),
            attr_ints("pads", &pads),
            attr_int("group", conv.groups as i64),
        ];
        let name = self.push("Conv", name, &inputs, attrs);
        Ok(Value { name, hw: out_hw })
    }

    /// The network's non-linearity: `Sigmoid`+`Mul` (SiLU), `Clip` (ReLU6) or `Relu`.
    pub fn activate(&mut self, name: &str, act: Activation, x: &Value) -> Value {
        let out = match act {
            Activation::Silu => {
                let gate = self.push("Sigmoid", &format!("{name}.sigmoid"), &[&x.name], vec![]);
                self.push("Mul", &format!("{name}.silu"), &[&x.name, &gate], vec![])
            }
            Activation::Relu6 => {
                if !self.relu6_bounds {
                    self.initializers.push(f32_tensor("relu6.min", &[], &[0.0]));
                    self.initializers.push(f32_tensor("relu6.max", &[], &[6.0]));
                    self.relu6_bounds = true;
                }
                self.push(
                    "Clip",
                    &format!("{name}.relu6"),
                    &[&x.name, "relu6.min", "relu6.max"],
                    vec![],
                )
            }
            Activation::Relu => self.push("Relu", &format!("{name}.relu"), &[&x.name], vec![]),
        };
        Value {
            name: out,
            hw: x.hw,
        }
    }

    fn global_pool(&mut self, name: &str, x: &Value) -> Value {
        let out = self.push("GlobalAveragePool", name, &[&x.name], vec![]);
        Value {
            name: out,
            hw: [1, 1],
        }
    }

    /// Squeeze-excitation: pool, reduce conv, activation, expand conv, sigmoid gate, multiply.
    fn squeeze_excite(
        &mut self,
        name: &str,
        se: &SqueezeExcite,
        x: &Value,
    ) -> Result<Value, ExportError> {
        let s = self.global_pool(&format!("{name}.pool"), x);
        let s = self.conv(&format!("{name}.conv_reduce"), &se.conv_reduce, &s)?;
        let s = self.activate(&format!("{name}.conv_reduce"), se.act, &s);
        let s = self.conv(&format!("{name}.conv_expand"), &se.conv_expand, &s)?;
        let gate = self.push("Sigmoid", &format!("{name}.gate"), &[&s.name], vec![]);
        let out = self.push("Mul", &format!("{name}.scale"), &[&x.name, &gate], vec![]);
        Ok(Value {
            name: out,
            hw: x.hw,
        })
    }

    fn maybe_se(
        &mut self,
        name: &str,
        se: &Option<SqueezeExcite>,
        x: Value,
    ) -> Result<Value, ExportError> {
        match se {
            Some(se) => self.squeeze_excite(&format!("{name}.se"), se, &x),
            None => Ok(x),
        }
    }

    /// One block (BatchNorm already folded), with its residual `Add` where it has one.
    pub fn block(&mut self, name: &str, block: &Block, x: &Value) -> Result<Value, ExportError> {
        let conv_act = |g: &mut Self, leaf: &str, conv: &Conv2d, act, v: &Value| {
            let y = g.conv(&format!("{name}.{leaf}"), conv, v)?;
            Ok::<Value, ExportError>(g.activate(&format!("{name}.{leaf}"), act, &y))
        };
        let (y, skip) = match block {
            Block::ConvBnAct(b) => (conv_act(self, "conv", &b.conv, b.act, x)?, b.has_skip),
            Block::EdgeResidual(b) => {
                let y = conv_act(self, "conv_exp", &b.conv_exp, b.act, x)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (
                    self.conv(&format!("{name}.conv_pwl"), &b.conv_pwl, &y)?,
                    b.has_skip,
                )
            }
            Block::DepthwiseSeparable(b) => {
                let y = match &b.conv_s2d {
                    Some(conv) => conv_act(self, "conv_s2d", conv, b.act, x)?,
                    None => x.clone(),
                };
                let y = conv_act(self, "conv_dw", &b.conv_dw, b.act, &y)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (
                    self.conv(&format!("{name}.conv_pw"), &b.conv_pw, &y)?,
                    b.has_skip,
                )
            }
            Block::InvertedResidual(b) if b.aa.is_some() || b.gc.is_some() => {
                return Err(unsupported_layer(if b.aa.is_some() {
                    "BlurPool"
                } else {
                    "global-context attention"
                }));
            }
            Block::CondConvResidual(_) => return Err(unsupported_layer("CondConv")),
            Block::NormActBlock(_) => {
                return Err(unsupported_layer("GroupNorm / LayerNorm / EvoNorm"));
            }
            Block::InvertedResidual(b) => {
                let y = conv_act(self, "conv_pw", &b.conv_pw, b.act, x)?;
                let y = conv_act(self, "conv_dw", &b.conv_dw, b.act, &y)?;
                let y = self.maybe_se(name, &b.se, y)?;
                (
                    self.conv(&format!("{name}.conv_pwl"), &b.conv_pwl, &y)?,
                    b.has_skip,
                )
            }
        };
        if !skip {
            return Ok(y);
        }
        let out = self.push(
            "Add",
            &format!("{name}.residual"),
            &[&y.name, &x.name],
            vec![],
        );
        Ok(Value {
            name: out,
            hw: y.hw,
        })
    }

    /// The whole network from `input` to logits `[N, classes]`; returns the logits' name.
    pub fn network(&mut self, model: &EfficientNet, input: &Value) -> Result<String, ExportError> {
        if model.norm1.is_some() {
            return Err(unsupported_layer("GroupNorm / LayerNorm / EvoNorm"));
        }
        if let Some(Block::CondConvResidual(_)) = model
            .blocks
            .iter()
            .flatten()
            .find(|b| matches!(b, Block::CondConvResidual(_)))
        {
            return Err(unsupported_layer("CondConv"));
        }
        if !model.is_folded() {
            return Err(ExportError::Unsupported(
                "BatchNorm must be folded first (EfficientNet::fold_batchnorm)".into(),
            ));
        }
        let x = self.conv("conv_stem", &model.conv_stem, input)?;
        let mut x = self.activate("conv_stem", model.act, &x);
        for (s, stage) in model.blocks.iter().enumerate() {
            for (j, block) in stage.iter().enumerate() {
                x = self.block(&format!("blocks.{s}.{j}"), block, &x)?;
            }
        }
        let x = self.conv("conv_head", &model.conv_head, &x)?;
        let x = self.activate("conv_head", model.act, &x);
        let pooled = self.global_pool("global_pool", &x);
        let flat = self.push(
            "Flatten",
            "flatten",
            &[&pooled.name],
            vec![attr_int("axis", 1)],
        );
        self.classifier(model, &flat)
    }

    /// `Gemm` with burn's `[features, classes]` weight as B (no transpose) and the bias as C.
    fn classifier(&mut self, model: &EfficientNet, x: &str) -> Result<String, ExportError> {
        let weight = model.classifier.weight.val();
        let dims = weight.dims();
        self.initializers
            .push(f32_tensor("classifier.weight", &dims, &values(weight)?));
        let bias = match &model.classifier.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; dims[1]],
        };
        self.initializers
            .push(f32_tensor("classifier.bias", &[dims[1]], &bias));
        Ok(self.push(
            "Gemm",
            "classifier",
            &[x, "classifier.weight", "classifier.bias"],
            vec![],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::same_pads;

    #[test]
    fn same_padding_puts_the_extra_pixel_at_the_end() {
        // 224, k3 s2: out 112, total (111*2+3)-224 = 1 -> (0, 1), like TF and burn.
        assert_eq!(same_pads(224, 3, 2), (0, 1));
        // Odd input, k3 s2: out 113, total (112*2+3)-225 = 2 -> (1, 1).
        assert_eq!(same_pads(225, 3, 2), (1, 1));
        // k5 s2 on 112: out 56, total 55*2+5-112 = 3 -> (1, 2).
        assert_eq!(same_pads(112, 5, 2), (1, 2));
        // Stride 1 keeps the size: k3 -> (1, 1), k1 -> (0, 0).
        assert_eq!(same_pads(7, 3, 1), (1, 1));
        assert_eq!(same_pads(7, 1, 1), (0, 0));
    }
}
