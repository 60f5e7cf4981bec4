//! effnet's int8 `.bpk`: a calibrated [`QuantModel`] (int8 weights with their per-channel
//! scales, int32 biases, the quantisation of every activation) in a burnpack file with the
//! model's description, preprocessing, provenance and class names, about a quarter of the f32
//! file. [`load_native`](crate::load_native) reads it like any native file: the
//! [`Pretrained`] it returns carries the [`QuantModel`] (run by effnet-cpu's int8 executor) and,
//! for burn, the model with the int8 weights dequantised.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::store::burn_pack::{self, Bytes};
use burn::tensor::DType;
use effnet_cpu::kernels::Act;
use effnet_cpu::plan::{Conv, Depthwise, Pad, SqueezeExcite};
use effnet_cpu::quant::{
    QBlock, QConv, QDepthwise, QParams, QSqueezeExcite, QuantModel, RangeMethod,
};
use serde::{Deserialize, Serialize};

use crate::Block;
use crate::blocks::SqueezeExcite as BurnSe;
use crate::config::EfficientNetConfig;
use crate::error::ModelError;
use crate::model::EfficientNet;
use crate::pretrained::{
    META_CONFIG, META_LABELS, META_PRECISION, META_PREPROCESS, META_SOURCE, Pretrained,
};
use effnet_data::Preprocess;

/// Metadata key of the int8 layer description (JSON, see [`Header`]).
pub const META_INT8: &str = "effnet.int8";
/// The value of `effnet.precision` in int8 files.
pub const INT8: &str = "int8";
/// Version of the int8 layout this code writes and reads.
const VERSION: u32 = 1;

/// `[scale, zero_point]` of one tensor.
type Qp = (f32, i32);

fn qp(q: QParams) -> Qp {
    (q.scale, q.zero_point)
}

fn unqp(q: Qp) -> QParams {
    QParams {
        scale: q.0,
        zero_point: q.1,
    }
}

/// Geometry and quantisation of one dense or depthwise layer (its tensors are stored apart).
#[derive(Serialize, Deserialize)]
struct LayerHeader {
    k: usize,
    stride: usize,
    /// `None`: TensorFlow SAME; else `[top, left, bottom, right]`.
    pad: Option<[usize; 4]>,
    cin: usize,
    cout: usize,
    act: String,
    input: Qp,
    pre_act: Qp,
    output: Qp,
}

#[derive(Serialize, Deserialize)]
struct SeHeader {
    pool: Qp,
    reduce: LayerHeader,
    expand: LayerHeader,
    gate: Qp,
    output: Qp,
}

#[derive(Serialize, Deserialize)]
struct BlockHeader {
    conv: Option<LayerHeader>,
    dw: Option<LayerHeader>,
    se: Option<SeHeader>,
    project: Option<LayerHeader>,
    skip: bool,
    output: Qp,
}

/// Everything of a [`QuantModel`] but its weight tensors.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    method: String,
    calibration_images: usize,
    input: Qp,
    stem: LayerHeader,
    blocks: Vec<BlockHeader>,
    head: LayerHeader,
    pool: Qp,
    fc: LayerHeader,
}

fn act_name(a: Act) -> &'static str {
    match a {
        Act::None => "none",
        Act::Silu => "silu",
        Act::Relu6 => "relu6",
        Act::Relu => "relu",
    }
}

fn act_of(s: &str) -> Result<Act, String> {
    Ok(match s {
        "none" => Act::None,
        "silu" => Act::Silu,
        "relu6" => Act::Relu6,
        "relu" => Act::Relu,
        other => return Err(format!("unknown activation '{other}'")),
    })
}

fn pad_of(p: Option<[usize; 4]>) -> Pad {
    match p {
        None => Pad::Same,
        Some([top, left, bottom, right]) => Pad::Explicit {
            top,
            left,
            bottom,
            right,
        },
    }
}

fn pad_header(p: Pad) -> Option<[usize; 4]> {
    match p {
        Pad::Same => None,
        Pad::Explicit {
            top,
            left,
            bottom,
            right,
        } => Some([top, left, bottom, right]),
    }
}

/// Collects the tensors to write while the header is built.
struct Tensors(Vec<burn_pack::Tensor>);

impl Tensors {
    fn push(&mut self, name: &str, dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) {
        let t = burn_pack::Tensor::new(
            name.to_string(),
            dtype,
            shape,
            None,
            Bytes::from_bytes_vec(bytes),
        );
        self.0.push(t);
    }

    fn conv(&mut self, name: &str, c: &QConv) -> LayerHeader {
        let w = c.weight.iter().map(|v| *v as u8).collect();
        self.push(
            &format!("{name}.weight"),
            DType::I8,
            vec![c.k * c.k * c.cin, c.cout],
            w,
        );
        self.scales_bias(name, &c.weight_scale, &c.bias);
        LayerHeader {
            k: c.k,
            stride: c.stride,
            pad: pad_header(c.pad),
            cin: c.cin,
            cout: c.cout,
            act: act_name(c.act).into(),
            input: qp(c.input),
            pre_act: qp(c.pre_act),
            output: qp(c.output),
        }
    }

    fn depthwise(&mut self, name: &str, d: &QDepthwise) -> LayerHeader {
        let w = d.weight.iter().map(|v| *v as u8).collect();
        self.push(
            &format!("{name}.weight"),
            DType::I8,
            vec![d.k * d.k, d.c],
            w,
        );
        self.scales_bias(name, &d.weight_scale, &d.bias);
        LayerHeader {
            k: d.k,
            stride: d.stride,
            pad: pad_header(d.pad),
            cin: d.c,
            cout: d.c,
            act: act_name(d.act).into(),
            input: qp(d.input),
            pre_act: qp(d.pre_act),
            output: qp(d.output),
        }
    }

    fn scales_bias(&mut self, name: &str, scale: &[f32], bias: &[i32]) {
        let s = scale.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(
            &format!("{name}.weight_scale"),
            DType::F32,
            vec![scale.len()],
            s,
        );
        let b = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push(&format!("{name}.bias"), DType::I32, vec![bias.len()], b);
    }
}

/// Writes `q` with the model's description, preprocessing, provenance and class names as an
/// int8 `.bpk`, atomically.
pub fn save_int8(
    path: &Path,
    q: &QuantModel,
    config: &EfficientNetConfig,
    preprocess: &Preprocess,
    source: &str,
    labels: Option<&[String]>,
) -> Result<(), ModelError> {
    let write_err = |reason: String| ModelError::Write {
        path: path.to_path_buf(),
        reason,
    };
    q.validate().map_err(|e| write_err(e.to_string()))?;
    let mut t = Tensors(Vec::new());
    let blocks = q
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| BlockHeader {
            conv: b
                .conv
                .as_ref()
                .map(|c| t.conv(&format!("blocks.{i}.conv"), c)),
            dw: b
                .dw
                .as_ref()
                .map(|d| t.depthwise(&format!("blocks.{i}.dw"), d)),
            se: b.se.as_ref().map(|s| SeHeader {
                pool: qp(s.pool),
                reduce: t.conv(&format!("blocks.{i}.se.reduce"), &s.reduce),
                expand: t.conv(&format!("blocks.{i}.se.expand"), &s.expand),
                gate: qp(s.gate),
                output: qp(s.output),
            }),
            project: b
                .project
                .as_ref()
                .map(|p| t.conv(&format!("blocks.{i}.project"), p)),
            skip: b.skip,
            output: qp(b.output),
        })
        .collect();
    let header = Header {
        version: VERSION,
        method: q.method.to_string(),
        calibration_images: q.calibration_images,
        input: qp(q.input),
        stem: t.conv("stem", &q.stem),
        blocks,
        head: t.conv("head", &q.head),
        pool: qp(q.pool),
        fc: t.conv("fc", &q.fc),
    };
    fn json<T: Serialize + ?Sized>(v: &T) -> Result<String, String> {
        serde_json::to_string(v).map_err(|e| e.to_string())
    }
    let mut writer = burn_pack::Writer::new(t.0)
        .with_metadata(META_CONFIG, &json(config).map_err(write_err)?)
        .with_metadata(META_PREPROCESS, &json(preprocess).map_err(write_err)?)
        .with_metadata(META_SOURCE, source)
        .with_metadata(META_PRECISION, INT8)
        .with_metadata(META_INT8, &json(&header).map_err(write_err)?)
        .auto_extension(false)
        .overwrite(true);
    if let Some(labels) = labels {
        writer = writer.with_metadata(META_LABELS, &json(labels).map_err(write_err)?);
    }
    effnet_data::fsutil::write_atomic_with(path, |tmp| {
        writer
            .write_to_file(tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(|e| write_err(e.to_string()))
}

/// Reads the tensors of an int8 file back into a [`QuantModel`].
struct Reading<'a> {
    reader: &'a burn_pack::Reader,
}

impl Reading<'_> {
    fn bytes(&self, name: &str, len: usize, width: usize) -> Result<Vec<u8>, String> {
        let b = self
            .reader
            .tensor_data(name)
            .map_err(|e| format!("tensor '{name}': {e}"))?;
        if b.len() != len * width {
            return Err(format!(
                "tensor '{name}' has {} bytes, expected {}",
                b.len(),
                len * width
            ));
        }
        Ok(b)
    }

    fn i8s(&self, name: &str, len: usize) -> Result<Vec<i8>, String> {
        Ok(self
            .bytes(name, len, 1)?
            .into_iter()
            .map(|b| b as i8)
            .collect())
    }

    fn f32s(&self, name: &str, len: usize) -> Result<Vec<f32>, String> {
        let b = self.bytes(name, len, 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn i32s(&self, name: &str, len: usize) -> Result<Vec<i32>, String> {
        let b = self.bytes(name, len, 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn conv(&self, name: &str, h: &LayerHeader) -> Result<QConv, String> {
        let n = h.k.checked_mul(h.k).and_then(|v| v.checked_mul(h.cin));
        let n = n
            .and_then(|v| v.checked_mul(h.cout))
            .ok_or("layer too large")?;
        Ok(QConv {
            k: h.k,
            stride: h.stride,
            pad: pad_of(h.pad),
            cin: h.cin,
            cout: h.cout,
            weight: self.i8s(&format!("{name}.weight"), n)?,
            weight_scale: self.f32s(&format!("{name}.weight_scale"), h.cout)?,
            bias: self.i32s(&format!("{name}.bias"), h.cout)?,
            act: act_of(&h.act)?,
            input: unqp(h.input),
            pre_act: unqp(h.pre_act),
            output: unqp(h.output),
        })
    }

    fn depthwise(&self, name: &str, h: &LayerHeader) -> Result<QDepthwise, String> {
        let n = h.k.checked_mul(h.k).and_then(|v| v.checked_mul(h.cin));
        let n = n.ok_or("layer too large")?;
        Ok(QDepthwise {
            k: h.k,
            stride: h.stride,
            pad: pad_of(h.pad),
            c: h.cin,
            weight: self.i8s(&format!("{name}.weight"), n)?,
            weight_scale: self.f32s(&format!("{name}.weight_scale"), h.cin)?,
            bias: self.i32s(&format!("{name}.bias"), h.cin)?,
            act: act_of(&h.act)?,
            input: unqp(h.input),
            pre_act: unqp(h.pre_act),
            output: unqp(h.output),
        })
    }

    fn model(&self, h: &Header) -> Result<QuantModel, String> {
        if h.version != VERSION {
            return Err(format!(
                "int8 layout version {} (this effnet reads {VERSION})",
                h.version
            ));
        }
        let mut blocks = Vec::with_capacity(h.blocks.len());
        for (i, b) in h.blocks.iter().enumerate() {
            let p = |part: &str| format!("blocks.{i}.{part}");
            let se = match &b.se {
                Some(s) => Some(QSqueezeExcite {
                    pool: unqp(s.pool),
                    reduce: self.conv(&p("se.reduce"), &s.reduce)?,
                    expand: self.conv(&p("se.expand"), &s.expand)?,
                    gate: unqp(s.gate),
                    output: unqp(s.output),
                }),
                None => None,
            };
            blocks.push(QBlock {
                conv: b
                    .conv
                    .as_ref()
                    .map(|c| self.conv(&p("conv"), c))
                    .transpose()?,
                dw: b
                    .dw
                    .as_ref()
                    .map(|d| self.depthwise(&p("dw"), d))
                    .transpose()?,
                se,
                project: b
                    .project
                    .as_ref()
                    .map(|c| self.conv(&p("project"), c))
                    .transpose()?,
                skip: b.skip,
                output: unqp(b.output),
            });
        }
        let q = QuantModel {
            input: unqp(h.input),
            stem: self.conv("stem", &h.stem)?,
            blocks,
            head: self.conv("head", &h.head)?,
            pool: unqp(h.pool),
            fc: self.conv("fc", &h.fc)?,
            method: h.method.parse().unwrap_or(RangeMethod::MinMax),
            calibration_images: h.calibration_images,
        };
        q.validate().map_err(|e| e.to_string())?;
        Ok(q)
    }
}

/// Reads an int8 file's [`QuantModel`] (the rest of [`Pretrained`] is read by the caller).
pub(crate) fn read_quant_model(reader: &burn_pack::Reader) -> Result<QuantModel, String> {
    let text = reader
        .metadata()
        .get(META_INT8)
        .ok_or_else(|| format!("int8 file without '{META_INT8}' metadata"))?;
    let header: Header =
        serde_json::from_str(text).map_err(|e| format!("bad int8 metadata ({e})"))?;
    Reading { reader }.model(&header)
}

/// The burn model of `config` computing what `q` computes with its weights dequantised (BN
/// folded): the burn engine's view of an int8 file.
pub(crate) fn dequantized_model(
    q: &QuantModel,
    config: &EfficientNetConfig,
    device: &Device,
) -> Result<EfficientNet, String> {
    let plan = q.dequantized_plan();
    let mut model = config.init(device).fold_batchnorm();
    let blocks: Vec<&mut Block> = model.blocks.iter_mut().flatten().collect();
    if blocks.len() != plan.blocks.len() || model.classifier.weight.dims()[1] != q.num_classes() {
        return Err(format!(
            "int8 layers ({} blocks, {} classes) do not match model '{}'",
            plan.blocks.len(),
            q.num_classes(),
            config.name
        ));
    }
    for (i, (b, p)) in blocks.into_iter().zip(&plan.blocks).enumerate() {
        let missing = || format!("int8 block {i} does not match the model's block");
        let need = |c: &Option<Conv>| c.as_ref().ok_or_else(missing).cloned();
        let need_dw = |d: &Option<Depthwise>| d.as_ref().ok_or_else(missing).cloned();
        let unsupported = || format!("int8 block {i}: a layer the native engine does not run");
        match b {
            Block::EdgeResidual(b) if b.se.is_some() => return Err(unsupported()),
            Block::DepthwiseSeparable(b) if b.conv_s2d.is_some() => return Err(unsupported()),
            Block::InvertedResidual(b) if b.aa.is_some() || b.gc.is_some() => {
                return Err(unsupported());
            }
            Block::CondConvResidual(_) | Block::NormActBlock(_) => return Err(unsupported()),
            Block::ConvBnAct(b) => set_conv(&mut b.conv, &need(&p.conv)?, device)?,
            Block::EdgeResidual(b) => {
                set_conv(&mut b.conv_exp, &need(&p.conv)?, device)?;
                set_conv(&mut b.conv_pwl, &need(&p.project)?, device)?;
            }
            Block::DepthwiseSeparable(b) => {
                set_dw(&mut b.conv_dw, &need_dw(&p.dw)?, device)?;
                set_se(&mut b.se, p.se.as_ref(), device)?;
                set_conv(&mut b.conv_pw, &need(&p.project)?, device)?;
            }
            Block::InvertedResidual(b) => {
                set_conv(&mut b.conv_pw, &need(&p.conv)?, device)?;
                set_dw(&mut b.conv_dw, &need_dw(&p.dw)?, device)?;
                set_se(&mut b.se, p.se.as_ref(), device)?;
                set_conv(&mut b.conv_pwl, &need(&p.project)?, device)?;
            }
        }
    }
    set_conv(&mut model.conv_stem, &plan.stem, device)?;
    set_conv(&mut model.conv_head, &plan.head, device)?;
    let fc = &mut model.classifier;
    let [features, classes] = fc.weight.dims();
    if features * classes != plan.fc_weight.len() {
        return Err("int8 classifier does not match the model's".into());
    }
    fc.weight = Param::from_tensor(tensor(plan.fc_weight.clone(), [features, classes], device));
    fc.bias = Some(Param::from_tensor(tensor(
        plan.fc_bias.clone(),
        [classes],
        device,
    )));
    Ok(model)
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Sets a burn conv `[cout][cin][k][k]` from a plan conv `[k·k·cin][cout]`.
fn set_conv(conv: &mut Conv2d, c: &Conv, device: &Device) -> Result<(), String> {
    let dims = conv.weight.dims();
    if dims != [c.cout, c.cin, c.k, c.k] {
        return Err(format!(
            "int8 conv {:?} does not match the model's {dims:?}",
            [c.cout, c.cin, c.k, c.k]
        ));
    }
    let (k, cin, cout) = (c.k, c.cin, c.cout);
    let mut oihw = vec![0f32; c.weight.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..k * k {
                oihw[(co * cin + ci) * k * k + t] = c.weight[(t * cin + ci) * cout + co];
            }
        }
    }
    conv.weight = Param::from_tensor(tensor(oihw, dims, device));
    conv.bias = Some(Param::from_tensor(tensor(c.bias.clone(), [cout], device)));
    Ok(())
}

/// Sets a burn depthwise conv `[c][1][k][k]` from a plan depthwise `[k·k][c]`.
fn set_dw(conv: &mut Conv2d, d: &Depthwise, device: &Device) -> Result<(), String> {
    let dims = conv.weight.dims();
    if dims != [d.c, 1, d.k, d.k] {
        return Err(format!(
            "int8 depthwise over {} channels does not match the model's {dims:?}",
            d.c
        ));
    }
    let kk = d.k * d.k;
    let mut w = vec![0f32; d.weight.len()];
    for ch in 0..d.c {
        for t in 0..kk {
            w[ch * kk + t] = d.weight[t * d.c + ch];
        }
    }
    conv.weight = Param::from_tensor(tensor(w, dims, device));
    conv.bias = Some(Param::from_tensor(tensor(d.bias.clone(), [d.c], device)));
    Ok(())
}

/// Sets a burn squeeze-excitation from the plan's transposed products.
fn set_se(
    se: &mut Option<BurnSe>,
    p: Option<&SqueezeExcite>,
    device: &Device,
) -> Result<(), String> {
    let (Some(se), Some(p)) = (se.as_mut(), p) else {
        return if se.is_none() && p.is_none() {
            Ok(())
        } else {
            Err("int8 squeeze-excitation does not match the model's".into())
        };
    };
    let (c, sq) = (p.channels(), p.b_reduce.len());
    // Plan reduce is [c][sq] (burn [sq][c][1][1]); expand [sq][c] (burn [c][sq][1][1]).
    let reduce = Conv {
        k: 1,
        stride: 1,
        pad: Pad::Same,
        cin: c,
        cout: sq,
        weight: p.w_reduce.clone(),
        bias: p.b_reduce.clone(),
        act: Act::None,
    };
    let expand = Conv {
        cin: sq,
        cout: c,
        weight: p.w_expand.clone(),
        bias: p.b_expand.clone(),
        ..reduce.clone()
    };
    set_conv(&mut se.conv_reduce, &reduce, device)?;
    set_conv(&mut se.conv_expand, &expand, device)
}

/// A [`Pretrained`] from an int8 file's parts: the dequantised burn model and the int8 model.
pub(crate) fn pretrained(
    q: QuantModel,
    config: EfficientNetConfig,
    preprocess: Preprocess,
    source: String,
    labels: Option<Vec<String>>,
    device: &Device,
) -> Result<Pretrained, String> {
    let model = dequantized_model(&q, &config, device)?;
    Ok(Pretrained {
        model,
        config,
        preprocess,
        source,
        labels,
        int8: Some(Box::new(q)),
    })
}
