//! Compiling a burn [`EfficientNet`] into effnet-cpu's [`Plan`] (and [`Executor`]), the
//! dedicated CPU inference engine: reads every weight once with `into_data`, BatchNorm folded.
//!
//! ```no_run
//! use effnet_cpu::Layout;
//! # fn demo(model: &effnet_model::EfficientNet, cfg: &effnet_model::EfficientNetConfig) {
//! let exec = effnet_model::native::executor(model, cfg).unwrap();
//! let logits = exec.forward(&vec![0.0; 3 * 224 * 224], 1, 224, 224, Layout::Nchw).unwrap();
//! assert_eq!(logits.len(), exec.num_classes());
//! # }
//! ```

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use effnet_cpu::kernels::Act;
use effnet_cpu::plan::{BlockPlan, Conv, Depthwise, Pad, Plan, SqueezeExcite};
use effnet_cpu::{CpuError, Executor};

use crate::blocks::SqueezeExcite as BurnSe;
use crate::{Activation, Block, EfficientNet, EfficientNetConfig};

fn act(a: Activation) -> Act {
    match a {
        Activation::Silu => Act::Silu,
        Activation::Relu6 => Act::Relu6,
        Activation::Relu => Act::Relu,
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, CpuError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CpuError::Shape(format!("reading weights: {e:?}")))
}

fn pad_of(c: &Conv2d) -> Pad {
    match c.padding {
        PaddingConfig2d::Same => Pad::Same,
        PaddingConfig2d::Valid => Pad::Explicit {
            top: 0,
            left: 0,
            bottom: 0,
            right: 0,
        },
        PaddingConfig2d::Explicit(top, left, bottom, right) => Pad::Explicit {
            top,
            left,
            bottom,
            right,
        },
    }
}

/// Weights, bias and stride of a conv, rejecting what the kernels do not do.
/// A conv's weights, their burn shape, its bias and its stride.
type ConvParts = (Vec<f32>, [usize; 4], Option<Vec<f32>>, usize);

fn parts(c: &Conv2d) -> Result<ConvParts, CpuError> {
    if c.dilation != [1, 1] || c.stride[0] != c.stride[1] {
        return Err(CpuError::Unsupported(format!(
            "conv with dilation {:?} and stride {:?}",
            c.dilation, c.stride
        )));
    }
    let dims = c.weight.dims();
    let bias = c.bias.as_ref().map(|b| values(b.val())).transpose()?;
    Ok((values(c.weight.val())?, dims, bias, c.stride[0]))
}

fn dense(c: &Conv2d, a: Act) -> Result<Conv, CpuError> {
    if c.groups != 1 {
        return Err(CpuError::Unsupported(format!(
            "grouped conv ({} groups)",
            c.groups
        )));
    }
    let (w, dims, bias, stride) = parts(c)?;
    Conv::from_oihw(&w, dims, bias, stride, pad_of(c), a)
}

fn depthwise(c: &Conv2d, a: Act) -> Result<Depthwise, CpuError> {
    let (w, dims, bias, stride) = parts(c)?;
    if c.groups != dims[0] {
        return Err(CpuError::Unsupported(format!(
            "grouped convolution ({} groups, {} channels) layers (the burn engine runs this model)",
            c.groups, dims[0]
        )));
    }
    Depthwise::from_oihw(&w, dims, bias, stride, pad_of(c), a)
}

fn squeeze_excite(se: &Option<BurnSe>) -> Result<Option<SqueezeExcite>, CpuError> {
    let Some(se) = se else { return Ok(None) };
    let zeros = |n: usize| vec![0.0; n];
    let (r, rdims, rb, _) = parts(&se.conv_reduce)?;
    let (e, edims, eb, _) = parts(&se.conv_expand)?;
    let rb = rb.unwrap_or_else(|| zeros(rdims[0]));
    let eb = eb.unwrap_or_else(|| zeros(edims[0]));
    SqueezeExcite::from_convs(&r, rb, &e, eb, act(se.act)).map(Some)
}

fn block(b: &Block) -> Result<BlockPlan, CpuError> {
    let none = |conv, dw, se, project, skip| BlockPlan {
        conv,
        dw,
        se,
        project,
        skip,
    };
    let refuse = |layer: &str| {
        Err(CpuError::Unsupported(format!(
            "{layer} layers (the burn engine runs this model)"
        )))
    };
    Ok(match b {
        Block::EdgeResidual(b) if b.se.is_some() => {
            return refuse("squeeze-excitation inside Fused-MBConv");
        }
        Block::DepthwiseSeparable(b) if b.conv_s2d.is_some() => {
            return refuse("space-to-depth");
        }
        Block::InvertedResidual(b) if b.aa.is_some() => return refuse("BlurPool"),
        Block::InvertedResidual(b) if b.gc.is_some() => return refuse("global-context attention"),
        Block::CondConvResidual(_) => return refuse("CondConv"),
        Block::NormActBlock(_) => return refuse("GroupNorm / LayerNorm / EvoNorm"),
        Block::ConvBnAct(b) => none(
            Some(dense(&b.conv, act(b.act))?),
            None,
            None,
            None,
            b.has_skip,
        ),
        Block::EdgeResidual(b) => none(
            Some(dense(&b.conv_exp, act(b.act))?),
            None,
            None,
            Some(dense(&b.conv_pwl, Act::None)?),
            b.has_skip,
        ),
        Block::DepthwiseSeparable(b) => none(
            None,
            Some(depthwise(&b.conv_dw, act(b.act))?),
            squeeze_excite(&b.se)?,
            Some(dense(&b.conv_pw, Act::None)?),
            b.has_skip,
        ),
        Block::InvertedResidual(b) => none(
            Some(dense(&b.conv_pw, act(b.act))?),
            Some(depthwise(&b.conv_dw, act(b.act))?),
            squeeze_excite(&b.se)?,
            Some(dense(&b.conv_pwl, Act::None)?),
            b.has_skip,
        ),
    })
}

/// Compiles `model` (BatchNorm is folded first when it is not yet) described by `config`.
pub fn plan(model: &EfficientNet, config: &EfficientNetConfig) -> Result<Plan, CpuError> {
    if model.num_classes() != config.num_classes {
        return Err(CpuError::Shape(format!(
            "model has {} classes, config '{}' {}",
            model.num_classes(),
            config.name,
            config.num_classes
        )));
    }
    if model.norm1.is_some() {
        return Err(CpuError::Unsupported(
            "GroupNorm / LayerNorm / EvoNorm layers (the burn engine runs this model)".into(),
        ));
    }
    let folded;
    let model = if model.is_folded() {
        model
    } else {
        folded = model.clone().fold_batchnorm();
        &folded
    };
    let a = act(model.act);
    let blocks = model
        .blocks
        .iter()
        .flatten()
        .map(block)
        .collect::<Result<Vec<_>, _>>()?;
    let fc = &model.classifier;
    let classes = fc.weight.dims()[1];
    let plan = Plan {
        stem: dense(&model.conv_stem, a)?,
        blocks,
        head: dense(&model.conv_head, a)?,
        fc_weight: values(fc.weight.val())?,
        fc_bias: match &fc.bias {
            Some(b) => values(b.val())?,
            None => vec![0.0; classes],
        },
    };
    plan.validate()?;
    Ok(plan)
}

/// Compiles `model` + `config` into an executor in one call (see [`plan`]).
pub fn executor(model: &EfficientNet, config: &EfficientNetConfig) -> Result<Executor, CpuError> {
    Executor::new(plan(model, config)?)
}
