//! Exponential moving average of the weights (and BatchNorm statistics), the "EMA model" that
//! EfficientNet recipes evaluate: burn has none (burn#5402), so it is a shadow [`EfficientNet`]
//! on the inference device, updated in place after every optimiser step. On the CPU (flex)
//! device the update is one threaded pass over all parameters (effnet-cpu's
//! [`kernels::optim::ema`](effnet_cpu::kernels::optim::ema)); elsewhere a few burn operations
//! per parameter. Both give the same values.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use effnet_cpu::Isa;
use effnet_cpu::kernels::optim::{self as kernels, EmaSegment};
use effnet_model::EfficientNet;

use crate::optim::flex::{self, FlexTensor, Put, Take};

/// A shadow copy of the model whose parameters track an EMA of the trained ones.
#[derive(Debug)]
pub struct ModelEma {
    /// The averaged network (plain device, deterministic forward).
    pub model: EfficientNet,
    /// Target decay.
    pub decay: f64,
    /// Use the warmup ramp of [`ModelEma::decay_at`].
    pub warmup: bool,
    /// Warmup power.
    pub power: f64,
    /// Number of updates so far (drives the warmup; saved in checkpoints).
    pub updates: u64,
}

impl ModelEma {
    /// Starts the average at the current weights. `model` must be an inference copy
    /// (`train_model.valid()`), so the shadow never joins an autodiff graph.
    pub fn new(model: EfficientNet, decay: f64, warmup: bool, power: f64) -> Self {
        Self {
            model,
            decay,
            warmup,
            power,
            updates: 0,
        }
    }

    /// Decay used for the update after `updates` previous updates: timm `ModelEmaV3` warmup
    /// `1 - (1 + step)^-power`, capped by the target decay.
    pub fn decay_at(&self, updates: u64) -> f64 {
        if self.warmup {
            let d = 1.0 - (1.0 + updates as f64).powf(-self.power);
            d.min(self.decay).max(0.0)
        } else {
            self.decay
        }
    }

    /// `ema = d * ema + (1 - d) * current` for every parameter and running statistic.
    /// `current` must have the same structure (an inference copy of the training model).
    pub fn update(&mut self, current: &EfficientNet) {
        let d = self.decay_at(self.updates);
        self.updates += 1;
        if !crate::optim::plain_optim_requested() && self.update_fused(current, d) {
            return;
        }
        self.update_composed(current, d);
    }

    /// The update as a few burn operations per parameter (any device).
    fn update_composed(&mut self, current: &EfficientNet, decay: f64) {
        let mut collect = Collect(Vec::new());
        current.visit(&mut collect);
        let mut apply = Apply {
            values: collect.0.into_iter(),
            decay,
        };
        self.model = self.model.clone().map(&mut apply);
    }
}

impl ModelEma {
    /// The update as one pass over all parameters, in place; `false` (nothing done) off the
    /// flex device.
    fn update_fused(&mut self, current: &EfficientNet, decay: f64) -> bool {
        let mut read = Read(Some(Vec::new()));
        current.visit(&mut read);
        let Some(cur) = read.0 else { return false };
        // The shadow model is moved out (a cheap clone of `current` holds its place), so that
        // its tensors are not shared while they are written.
        let ema = std::mem::replace(&mut self.model, current.clone());
        let mut take = Take::all();
        let ema = ema.map(&mut take);
        let mut taken = take.taken;
        let fits = !take.off_flex
            && taken.len() == cur.len()
            && taken
                .iter()
                .zip(&cur)
                .all(|(t, c)| flex::values(&t.tensor).len() == flex::values(c).len());
        if fits {
            let segments = taken
                .iter_mut()
                .zip(&cur)
                .map(|(t, c)| EmaSegment {
                    ema: flex::values_mut(&mut t.tensor),
                    current: flex::values(c),
                })
                .collect();
            kernels::ema(Isa::detect(), segments, decay, rayon::current_num_threads());
        }
        self.model = ema.map(&mut Put::new(taken));
        fits
    }
}

/// The values of every float parameter of a module on the flex device (read in place), in
/// module order; `None` off the flex device.
struct Read(Option<Vec<FlexTensor>>);

impl ModuleVisitor for Read {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(v) = self.0.as_mut() {
            match flex::plain_f32(param.val()) {
                Some(t) => v.push(t),
                None => self.0 = None,
            }
        }
    }
}

/// Copies every parameter and running statistic of `src` into `dst` (same architecture, possibly
/// different non-tensor settings such as stochastic-depth rates); keeps `dst`'s parameter ids.
pub fn copy_weights(dst: EfficientNet, src: &EfficientNet) -> EfficientNet {
    let mut collect = Collect(Vec::new());
    src.visit(&mut collect);
    let mut apply = Apply {
        values: collect.0.into_iter(),
        decay: 0.0,
    };
    dst.map(&mut apply)
}

struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .push(param.val().without_autodiff().flatten(0, D - 1));
    }
}

struct Apply {
    values: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Apply {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(cur) = self.values.next() else {
            return param;
        };
        let d = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            let cur: Tensor<D> = cur.to_device(&ema.device()).reshape(shape);
            ema.mul_scalar(d) + cur.mul_scalar(1.0 - d)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effnet_model::EfficientNetConfig;

    /// Every float parameter's values, in module order.
    fn values(m: &EfficientNet) -> Vec<f32> {
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0.into_iter()
            .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn ema_moves_towards_current_weights_by_one_minus_decay() {
        let dev = Device::flex();
        let mut cfg = EfficientNetConfig::preset("efficientnetv2_b0").unwrap();
        cfg.width_mult = 0.25;
        cfg.num_classes = 3;
        let a = cfg.init(&dev);
        let b = cfg.init(&dev);
        let wa: Vec<f32> = a
            .classifier
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let wb: Vec<f32> = b
            .classifier
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let a_copy = copy_weights(cfg.init(&dev), &a);
        let b_before = values(&b);
        let mut ema = ModelEma::new(a, 0.9, false, 0.75);
        ema.update(&b);
        let we: Vec<f32> = ema
            .model
            .classifier
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..wa.len() {
            let want = 0.9 * wa[i] + 0.1 * wb[i];
            assert!((we[i] - want).abs() < 1e-6, "{i}: {} vs {want}", we[i]);
        }
        assert_eq!(ema.updates, 1);
        // The fused update (this CPU) and burn's composed one give the same bits.
        let mut composed = ModelEma::new(a_copy, 0.9, false, 0.75);
        composed.update_composed(&b, 0.9);
        let wc: Vec<f32> = values(&composed.model);
        assert_eq!(values(&ema.model), wc);
        // Written in place, but only the average: the current weights are as they were.
        assert_eq!(values(&b), b_before);
        let warm = ModelEma::new(b, 0.9999, true, 0.75);
        assert_eq!(warm.decay_at(0), 0.0);
        assert!(warm.decay_at(10) < 0.9 && warm.decay_at(1_000_000) == 0.9999);
    }
}
