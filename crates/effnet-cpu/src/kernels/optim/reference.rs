//! Plain per-value optimiser updates in f64, written from the published formulas (PyTorch's
//! `AdamW` and `SGD`, TensorFlow-1's RMSProp): the references the fused loops are tested
//! against, one value at a time.

/// AdamW state of one value.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdamW {
    /// Weight.
    pub p: f64,
    /// First moment.
    pub m: f64,
    /// Second moment.
    pub v: f64,
}

impl AdamW {
    /// Step `t` (≥ 1) with gradient `g`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(&mut self, g: f64, lr: f64, b1: f64, b2: f64, eps: f64, wd: f64, t: i32) {
        self.m = b1 * self.m + (1.0 - b1) * g;
        self.v = b2 * self.v + (1.0 - b2) * g * g;
        let m_hat = self.m / (1.0 - b1.powi(t));
        let v_hat = self.v / (1.0 - b2.powi(t));
        self.p = self.p * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps);
    }
}

/// TF-RMSProp state of one value.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropTf {
    /// Weight.
    pub p: f64,
    /// Mean square (starts at one).
    pub ms: f64,
    /// Momentum buffer (learning rate included).
    pub mom: f64,
}

impl RmsPropTf {
    /// Fresh state for weight `p`.
    pub fn new(p: f64) -> Self {
        Self {
            p,
            ms: 1.0,
            mom: 0.0,
        }
    }

    /// One step with gradient `g`.
    pub fn step(&mut self, g: f64, lr: f64, rho: f64, momentum: f64, eps: f64, wd: f64) {
        let g = g + wd * self.p;
        self.ms = rho * self.ms + (1.0 - rho) * g * g;
        self.mom = momentum * self.mom + lr * g / (self.ms + eps).sqrt();
        self.p -= self.mom;
    }
}

/// SGD state of one value (PyTorch `torch.optim.SGD`).
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    /// Weight.
    pub p: f64,
    /// Velocity; `None` before the first step.
    pub v: Option<f64>,
}

impl Sgd {
    /// One step with gradient `g`; `momentum` 0 is plain SGD.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        g: f64,
        lr: f64,
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        wd: f64,
    ) {
        let mut g = g + wd * self.p;
        if momentum != 0.0 {
            let v = match self.v {
                None => g,
                Some(v) => momentum * v + (1.0 - dampening) * g,
            };
            self.v = Some(v);
            g = if nesterov { g + momentum * v } else { v };
        }
        self.p -= lr * g;
    }
}
