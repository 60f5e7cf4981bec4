//! The optimiser step on the CPU (flex) device as one threaded pass over all parameters
//! (effnet-cpu's [`kernels::optim`](effnet_cpu::kernels::optim)) instead of burn's few tensor
//! operations per parameter: same rules (AdamW, TF-RMSProp, SGD), same parameter groups (no
//! weight decay on BatchNorm and biases), same results, and global-norm clipping folded into the
//! update as a factor on the gradient.
//!
//! The state is saved in burn's optimiser record format, tensor for tensor and name for name
//! (`<param id>.momentum.moment_1`, ...): a checkpoint written by either path resumes on the
//! other, and checkpoints of earlier versions load.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::burn_pack::{self, Reader, Scalar, Writer};
use burn::tensor::DType;
use effnet_cpu::Isa;
use effnet_cpu::kernels::optim::{
    self as kernels, AdamWSegment, AdamWStep, RmsPropTfSegment, RmsPropTfStep, SgdSegment, SgdStep,
};

use super::flex::{self, Put, Take, Taken};

/// Key of a parameter's rank in burn's optimiser record.
const RANK_KEY: &str = "__rank";

/// The update rule and its settings (those of the burn optimiser it replaces).
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// burn's `AdamW` (PyTorch's): decoupled decay.
    AdamW {
        /// β₁.
        beta_1: f32,
        /// β₂.
        beta_2: f32,
        /// ε.
        eps: f32,
        /// Decoupled weight decay.
        weight_decay: f32,
    },
    /// TensorFlow-1 RMSProp ([`super::RmsPropTf`]).
    RmsPropTf {
        /// Mean-square decay.
        rho: f64,
        /// Momentum.
        momentum: f64,
        /// ε under the root.
        eps: f64,
        /// L2 weight decay.
        weight_decay: f64,
    },
    /// burn's `Sgd` as effnet configures it (PyTorch's).
    Sgd {
        /// Momentum (0: none).
        momentum: f64,
        /// Dampening.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 weight decay.
        weight_decay: f32,
    },
}

impl Rule {
    fn has_decay(&self) -> bool {
        match *self {
            Rule::AdamW { weight_decay, .. } | Rule::Sgd { weight_decay, .. } => weight_decay > 0.0,
            Rule::RmsPropTf { weight_decay, .. } => weight_decay > 0.0,
        }
    }
}

/// One parameter's optimiser state.
#[derive(Clone, Debug)]
struct Slot {
    /// Path the parameter had when the state was made (saved, as burn does).
    path: Option<String>,
    shape: Vec<usize>,
    /// Steps taken (AdamW's bias correction; SGD's first step).
    time: u64,
    /// AdamW: first moment; RMSProp: mean square; SGD: velocity.
    a: Vec<f32>,
    /// AdamW: second moment; RMSProp: momentum buffer; SGD: empty.
    b: Vec<f32>,
}

/// The fused optimiser (see the module doc).
#[derive(Clone)]
pub struct FusedOptimizer {
    rule: Rule,
    /// Parameters matching this get no weight decay.
    no_decay: Option<ParamGroup>,
    slots: HashMap<ParamId, Slot>,
    isa: Isa,
}

impl std::fmt::Debug for FusedOptimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedOptimizer")
            .field("rule", &self.rule)
            .field("states", &self.slots.len())
            .field("isa", &self.isa.name())
            .finish()
    }
}

impl FusedOptimizer {
    /// An optimiser with `rule`, exempting the parameters of `no_decay` from weight decay.
    pub fn new(rule: Rule, no_decay: Option<ParamGroup>) -> Self {
        Self {
            rule,
            no_decay,
            slots: HashMap::new(),
            isa: Isa::detect(),
        }
    }

    /// The update rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Updates `model` with `grads` at learning rate `lr`, the gradients first scaled so that
    /// their global L2 norm is at most `clip` when `clip > 0` (timm's `clip_grad_norm`). Returns
    /// the model and the norm before clipping (when clipping); gives the model and gradients
    /// back untouched (`Err`) when the parameters are not on the flex device.
    #[allow(clippy::type_complexity)]
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        mut grads: GradientsParams,
        clip: f64,
    ) -> std::result::Result<(M, Option<f64>), (M, GradientsParams)> {
        let mut take = Take::with_grads(&mut grads);
        let model = model.map(&mut take);
        if take.off_flex {
            return Err((model, grads));
        }
        let mut taken = take.taken;
        let threads = rayon::current_num_threads();
        let (norm, grad_scale) = if clip > 0.0 {
            let slices: Vec<&[f32]> = taken
                .iter()
                .filter_map(|t| t.grad.as_ref())
                .map(flex::values)
                .collect();
            let norm = kernels::sum_squares(&slices, threads).sqrt();
            let scale = (norm > clip && norm.is_finite()).then(|| (clip / (norm + 1e-6)) as f32);
            (Some(norm), scale)
        } else {
            (None, None)
        };
        self.update(lr, &mut taken, grad_scale, threads);
        let model = model.map(&mut Put::new(taken));
        Ok((model, norm))
    }

    /// Makes the state of every parameter that has none yet (zeros; ones for TF-RMSProp's mean
    /// square, which starts at one).
    fn make_missing_slots(&mut self, taken: &[Taken]) {
        for t in taken {
            let n = t.shape.iter().product();
            self.slots.entry(t.id).or_insert_with(|| Slot {
                path: Some(t.path.clone()),
                shape: t.shape.clone(),
                time: 0,
                a: match self.rule {
                    Rule::RmsPropTf { .. } => vec![1.0; n],
                    _ => vec![0.0; n],
                },
                b: match self.rule {
                    Rule::Sgd { .. } => Vec::new(),
                    _ => vec![0.0; n],
                },
            });
        }
    }

    /// Whether each taken parameter gets weight decay (the rule has it and the parameter is
    /// not in the no-decay group).
    fn decays(&self, taken: &[Taken]) -> Vec<bool> {
        taken
            .iter()
            .map(|t| {
                self.rule.has_decay()
                    && !self
                        .no_decay
                        .as_ref()
                        .is_some_and(|g| g.matches(&t.id, Some(t.path.as_str())))
            })
            .collect()
    }

    /// Runs the kernel over the `taken` parameters (module order, so that equal inputs give
    /// equal chunks whatever the threads).
    fn update(&mut self, lr: f64, taken: &mut [Taken], grad_scale: Option<f32>, threads: usize) {
        self.make_missing_slots(taken);
        let decays = self.decays(taken);
        let mut slots = slots_in_order(&mut self.slots, taken);
        let operands = taken.iter_mut().map(|t| {
            let grad = t.grad.as_ref().expect("taken with its gradient");
            (flex::values_mut(&mut t.tensor), flex::values(grad))
        });
        let isa = self.isa;
        match self.rule.clone() {
            Rule::AdamW {
                beta_1,
                beta_2,
                eps,
                weight_decay,
            } => {
                let segs = operands
                    .zip(slots.iter_mut())
                    .zip(&decays)
                    .map(|(((param, grad), slot), &decay)| {
                        slot.time += 1;
                        let wd = if decay { weight_decay } else { 0.0 };
                        let time = slot.time.min(u32::MAX as u64) as u32;
                        let mut step = AdamWStep::new(beta_1, beta_2, eps, lr, wd, time);
                        step.grad_scale = grad_scale;
                        AdamWSegment {
                            param,
                            grad,
                            m: &mut slot.a,
                            v: &mut slot.b,
                            step,
                        }
                    })
                    .collect();
                kernels::adamw(isa, segs, threads);
            }
            Rule::RmsPropTf {
                rho,
                momentum,
                eps,
                weight_decay,
            } => {
                let segs = operands
                    .zip(slots.iter_mut())
                    .zip(&decays)
                    .map(|(((param, grad), slot), &decay)| {
                        slot.time += 1;
                        let wd = if decay { weight_decay } else { 0.0 };
                        let mut step = RmsPropTfStep::new(rho, momentum, eps, wd, lr);
                        step.grad_scale = grad_scale;
                        RmsPropTfSegment {
                            param,
                            grad,
                            ms: &mut slot.a,
                            mom: &mut slot.b,
                            step,
                        }
                    })
                    .collect();
                kernels::rmsprop_tf(isa, segs, threads);
            }
            Rule::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => {
                let segs = operands
                    .zip(slots.iter_mut())
                    .zip(&decays)
                    .map(|(((param, grad), slot), &decay)| {
                        slot.time += 1;
                        let step = SgdStep {
                            lr: lr as f32,
                            weight_decay: decay.then_some(weight_decay),
                            momentum: Some(momentum as f32),
                            one_minus_dampening: (1.0 - dampening) as f32,
                            nesterov,
                            first: slot.time == 1,
                            grad_scale,
                        };
                        SgdSegment {
                            param,
                            grad,
                            velocity: &mut slot.a,
                            step,
                        }
                    })
                    .collect();
                kernels::sgd(isa, segs, threads);
            }
        }
    }

    /// Writes the state to `path` in burn's optimiser record format (burnpack): what
    /// `ModuleOptimizer::load` of the same rule reads.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let mut writer_scalars: Vec<(String, Scalar)> = Vec::new();
        let mut paths: Vec<(String, String)> = Vec::new();
        for (id, slot) in &self.slots {
            let prefix = id.val().to_string();
            writer_scalars.push((
                format!("{prefix}.{RANK_KEY}"),
                Scalar::from(slot.shape.len()),
            ));
            if let Some(p) = &slot.path {
                paths.push((prefix.clone(), p.clone()));
            }
            let mut push = |leaf: &str, v: &[f32]| {
                let data = TensorData::new(v.to_vec(), slot.shape.clone());
                let (bytes, shape, dtype) = data.into_parts();
                let name = format!("{prefix}.{leaf}");
                tensors.push(burn_pack::Tensor::new(
                    name,
                    dtype,
                    shape,
                    Some(id.val()),
                    bytes,
                ));
            };
            match self.rule {
                Rule::AdamW { .. } => {
                    writer_scalars.push((
                        format!("{prefix}.momentum.time"),
                        Scalar::from(slot.time as usize),
                    ));
                    push("momentum.moment_1", &slot.a);
                    push("momentum.moment_2", &slot.b);
                }
                Rule::RmsPropTf { .. } => {
                    push("ms", &slot.a);
                    push("mom", &slot.b);
                }
                // effnet's SGD always has a momentum state (momentum 0 included), as burn's.
                Rule::Sgd { .. } => push("momentum.velocity", &slot.a),
            }
        }
        let mut writer = Writer::new(tensors);
        for (k, v) in &writer_scalars {
            writer = writer.with_scalar(k, *v);
        }
        for (k, v) in &paths {
            writer = writer.with_metadata(k, v);
        }
        writer
            .write_to_file(path)
            .map_err(|e| anyhow!("writing the optimiser state {}: {e:?}", path.display()))
    }

    /// Reads a state written by [`save`](Self::save) or by burn's `ModuleOptimizer` of the same
    /// rule, replacing this one's. A record of another rule is an error naming what is missing.
    pub fn load(mut self, path: &Path) -> Result<Self> {
        let reader = Reader::from_file(path)
            .map_err(|e| anyhow!("reading the optimiser state {}: {e:?}", path.display()))?;
        let scalars = reader.scalars().clone();
        let paths = reader.metadata().clone();
        let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        let entries = reader
            .into_tensors()
            .map_err(|e| anyhow!("reading the optimiser state {}: {e:?}", path.display()))?;
        for t in entries {
            let (name, dtype, shape, _id, bytes) = t
                .into_parts()
                .map_err(|e| anyhow!("reading the optimiser state {}: {e:?}", path.display()))?;
            let data = TensorData::from_bytes(bytes, shape.clone(), dtype);
            let values = data
                .convert_dtype(DType::F32)
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("optimiser state tensor {name}: {e:?}"))?;
            tensors.insert(name, (shape.to_vec(), values));
        }
        let suffix = format!(".{RANK_KEY}");
        let mut slots = HashMap::new();
        for (key, rank) in &scalars {
            let Some(prefix) = key.strip_suffix(&suffix) else {
                continue;
            };
            let id: u64 = prefix
                .parse()
                .with_context(|| format!("optimiser state key {key}"))?;
            let rank = usize::try_from(*rank).map_err(|_| anyhow!("optimiser state key {key}"))?;
            let mut take = |leaf: &str| -> Result<(Vec<usize>, Vec<f32>)> {
                tensors.remove(&format!("{prefix}.{leaf}")).ok_or_else(|| {
                    anyhow!(
                        "{}: no '{leaf}' state for parameter {prefix}: it was saved by another \
                         optimiser than the recipe's ({})",
                        path.display(),
                        self.rule.name()
                    )
                })
            };
            let (shape, a, b, time) = match self.rule {
                Rule::AdamW { .. } => {
                    let (shape, a) = take("momentum.moment_1")?;
                    let (_, b) = take("momentum.moment_2")?;
                    let time = scalars
                        .get(&format!("{prefix}.momentum.time"))
                        .and_then(|s| u64::try_from(*s).ok())
                        .ok_or_else(|| anyhow!("{}: no step count for {prefix}", path.display()))?;
                    (shape, a, b, time)
                }
                Rule::RmsPropTf { .. } => {
                    let (shape, a) = take("ms")?;
                    let (_, b) = take("mom")?;
                    (shape, a, b, 1)
                }
                Rule::Sgd { .. } => {
                    let (shape, a) = take("momentum.velocity")?;
                    (shape, a, Vec::new(), 1)
                }
            };
            if shape.len() != rank {
                bail!(
                    "{}: parameter {prefix} has rank {rank} but a state of shape {shape:?}",
                    path.display()
                );
            }
            slots.insert(
                ParamId::from(id),
                Slot {
                    path: paths.get(prefix).cloned(),
                    shape,
                    time,
                    a,
                    b,
                },
            );
        }
        if let Some(name) = tensors.keys().next() {
            bail!(
                "{}: state '{name}' is not one of {}'s: it was saved by another optimiser",
                path.display(),
                self.rule.name()
            );
        }
        self.slots = slots;
        Ok(self)
    }
}

impl Rule {
    /// The recipe's name of the rule.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::AdamW { .. } => "adamw",
            Rule::RmsPropTf { .. } => "rmsproptf",
            Rule::Sgd { .. } => "sgd",
        }
    }
}

/// The states of `taken`, in its order, borrowed together (each made by `make_missing_slots`).
fn slots_in_order<'a>(slots: &'a mut HashMap<ParamId, Slot>, taken: &[Taken]) -> Vec<&'a mut Slot> {
    let mut by_id: HashMap<ParamId, &mut Slot> = slots.iter_mut().map(|(k, v)| (*k, v)).collect();
    taken
        .iter()
        .map(|t| by_id.remove(&t.id).expect("state made above"))
        .collect()
}
