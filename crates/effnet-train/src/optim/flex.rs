//! Direct access to the f32 values of parameters and gradients on the CPU (flex) device, so that
//! an update runs over all of them at once in place (no per-tensor operations, no copies of
//! tensors that only this code holds).
//!
//! [`Take`] lifts every float parameter out of a module (leaving an empty placeholder) together
//! with its path; after the update [`Put`] puts them back with their autodiff settings, as
//! burn's `ModuleOptimizer` restores them.

use std::collections::HashMap;

use burn::backend::Flex;
use burn::backend::tensor::FloatTensor;
use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, GradientCheckpointingStrategy};

/// A flex float tensor (burn-flex's `FlexTensor`).
pub(crate) type FlexTensor = FloatTensor<Flex>;

/// Whether tensors on `device` live on the flex CPU backend (so their values can be reached).
pub(crate) fn is_flex(device: &Device) -> bool {
    Tensor::<1>::zeros([1], device)
        .inner()
        .try_into_primitive::<Flex>()
        .is_ok()
}

/// `t` as a flex tensor whose buffer is f32, contiguous from offset 0, exactly `numel` long and
/// owned by this tensor alone (copied into such a buffer when it is not). `None` off the flex
/// backend.
pub(crate) fn owned_f32<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.inner().try_into_primitive::<Flex>().ok()?;
    Some(if is_plain_f32(&t) && t.is_unique() {
        t
    } else {
        FlexTensor::from_data(t.into_data().convert_dtype(DType::F32))
    })
}

/// `t` as a flex tensor with a plain f32 buffer (see [`owned_f32`]), possibly shared.
pub(crate) fn plain_f32<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    let t = t.inner().try_into_primitive::<Flex>().ok()?;
    Some(if is_plain_f32(&t) {
        t
    } else {
        FlexTensor::from_data(t.into_data().convert_dtype(DType::F32))
    })
}

fn is_plain_f32(t: &FlexTensor) -> bool {
    let n = t.layout().num_elements();
    t.dtype() == DType::F32
        && t.layout().contiguous_offsets() == Some((0, n))
        && t.storage::<f32>().len() == n
}

/// The values of a tensor from [`plain_f32`] or [`owned_f32`].
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.storage::<f32>()
}

/// The values of a tensor from [`owned_f32`], writable in place.
pub(crate) fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    // A tensor from `owned_f32` is unique, so this copies nothing.
    t.storage_mut::<f32>()
}

/// The autodiff settings of a parameter, put back on its updated value (as burn's optimisers do).
#[derive(Clone, Copy)]
pub(crate) struct Context {
    autodiff: bool,
    require_grad: bool,
    distributed: bool,
    checkpointing: Option<GradientCheckpointingStrategy>,
}

impl Context {
    fn capture<const D: usize>(t: &Tensor<D>) -> Self {
        // The other settings exist (and may be asked) only with autodiff.
        let autodiff = t.is_autodiff();
        Self {
            autodiff,
            require_grad: autodiff && t.is_require_grad(),
            distributed: autodiff && t.is_distributed(),
            checkpointing: autodiff
                .then(|| t.gradient_checkpointing_strategy())
                .flatten(),
        }
    }

    fn restore<const D: usize>(self, t: Tensor<D>, id: ParamId) -> Tensor<D> {
        if !self.autodiff {
            return t;
        }
        let mut t = Tensor::from_inner(t);
        if let Some(s) = self.checkpointing {
            t = t.with_gradient_checkpointing_strategy(s);
        }
        if self.require_grad {
            t = t.require_grad();
        }
        if self.distributed {
            t = t.set_distributed(id);
        }
        t
    }
}

/// A float parameter lifted out of its module.
pub(crate) struct Taken {
    /// Its id.
    pub id: ParamId,
    /// Its path (`blocks.1.0.conv_pw.weight`), as burn's parameter groups match it.
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values (f32, owned: see [`owned_f32`]).
    pub tensor: FlexTensor,
    /// Its gradient (f32, see [`plain_f32`]), when taken with gradients.
    pub grad: Option<FlexTensor>,
    ctx: Context,
}

/// Lifts float parameters out of a module in module order, leaving empty placeholders; [`Put`]
/// restores them. With gradients, only the parameters that have one, each with it. Takes
/// nothing (and says so in `off_flex`) when the module is not on the flex device.
pub(crate) struct Take<'g> {
    path: Vec<String>,
    grads: Option<&'g mut GradientsParams>,
    /// The parameters taken, in module order.
    pub taken: Vec<Taken>,
    /// Set when the parameters are not on the flex backend (nothing is taken then).
    pub off_flex: bool,
    /// Whether the parameters' device was checked.
    checked: bool,
}

impl<'g> Take<'g> {
    /// Takes every float parameter.
    pub fn all() -> Self {
        Self::new(None)
    }

    /// Takes the parameters that have a gradient in `grads`, with it (removed from `grads`).
    pub fn with_grads(grads: &'g mut GradientsParams) -> Self {
        Self::new(Some(grads))
    }

    fn new(grads: Option<&'g mut GradientsParams>) -> Self {
        Self {
            path: Vec::new(),
            grads,
            taken: Vec::new(),
            off_flex: false,
            checked: false,
        }
    }
}

impl ModuleMapper for Take<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.checked {
            self.checked = true;
            self.off_flex = !is_flex(&param.device());
        }
        if self.off_flex {
            return param;
        }
        let grad = match self.grads.as_deref_mut() {
            Some(grads) => match grads.remove::<D>(param.id) {
                Some(g) => Some(plain_f32(g).expect("a gradient on the flex device")),
                None => return param,
            },
            None => None,
        };
        let (id, tensor, mapper) = param.consume();
        let ctx = Context::capture(&tensor);
        let device = tensor.device();
        let shape = tensor.dims().to_vec();
        let values = owned_f32(tensor).expect("a float tensor on the flex device");
        self.taken.push(Taken {
            id,
            path: self.path.join("."),
            shape,
            tensor: values,
            grad,
            ctx,
        });
        let placeholder = Tensor::<D>::empty([0; D], &device);
        Param::from_mapped_value(id, placeholder, mapper)
    }
}

/// Puts parameters taken by [`Take`] back into the module (the same module, unchanged besides).
pub(crate) struct Put {
    taken: HashMap<ParamId, Taken>,
}

impl Put {
    /// Puts back `taken`.
    pub fn new(taken: Vec<Taken>) -> Self {
        Self {
            taken: taken.into_iter().map(|t| (t.id, t)).collect(),
        }
    }
}

impl ModuleMapper for Put {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(t) = self.taken.remove(&param.id) else {
            return param;
        };
        let (id, _placeholder, mapper) = param.consume();
        let value = Tensor::<D>::from_primitive::<Flex>(t.tensor);
        let value = t.ctx.restore(value, id);
        Param::from_mapped_value(id, value, mapper)
    }
}
