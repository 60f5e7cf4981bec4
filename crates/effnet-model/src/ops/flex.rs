//! [`TrainOps`] on burn's CPU backend (Flex): effnet-cpu's training kernels (AVX-512, AVX2+FMA,
//! NEON or the portable fallback, chosen at run time) on f32 tensors, on every rayon thread.
//! Other float types, dilated convs and grouped convs that are not depthwise take the default
//! composition of burn's operations.

use std::sync::OnceLock;

use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, TensorData};
use effnet_cpu::Isa;
use effnet_cpu::kernels::Act;
use effnet_cpu::train::{self, BnAct, Conv2dShape};

use super::backend::{
    FusedAct, TrainOps, batch_norm_act_backward_composed, batch_norm_act_composed,
    channel_gate_backward_composed, global_avg_pool_backward_composed, global_avg_pool_composed,
};

/// The instruction set of this process (`EFFNET_CPU_SIMD` honoured), detected once.
fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// The tensor's values in row-major order (a strided view is copied first).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

fn all_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

/// The kind of conv the kernels run, if they cover it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    Dense,
    Depthwise,
}

/// Shape and kind of the conv of `x` `[N, Cin, H, W]` by `weight` `[Cout, Cin/g, kh, kw]`, or
/// `None` where the composition must run.
fn conv_shape(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<(Conv2dShape, ConvKind)> {
    if !all_f32(&[x, weight]) || options.dilation != [1, 1] || x.shape().num_dims() != 4 {
        return None;
    }
    let [n, cin, h, w] = dims4(x);
    let [cout, cin_g, kh, kw] = dims4(weight);
    let kind = match options.groups {
        1 if cin_g == cin => ConvKind::Dense,
        g if g == cin && cin_g == 1 && cout == cin => ConvKind::Depthwise,
        _ => return None,
    };
    let s = Conv2dShape::new(
        [n, cin, h, w],
        cout,
        [kh, kw],
        options.stride,
        options.padding_begin(),
        options.padding_end(),
    );
    Some((s, kind))
}

fn act_kind(act: FusedAct) -> Act {
    match act {
        FusedAct::Identity => Act::None,
        FusedAct::Silu => Act::Silu,
        FusedAct::Relu6 => Act::Relu6,
        FusedAct::Relu => Act::Relu,
    }
}

/// The BatchNorm shape of `x` `[N, C, ...]`.
fn bn_shape(x: &FlexTensor, epsilon: f64, act: FusedAct) -> BnAct {
    let s = x.shape();
    let (batch, channels) = (s[0], s[1]);
    BnAct {
        batch,
        channels,
        plane: s.num_elements() / (batch * channels).max(1),
        eps: epsilon,
        act: act_kind(act),
    }
}

impl TrainOps for Flex {
    fn effnet_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some((s, kind)) = conv_shape(&x, &weight, &options) else {
            return Self::conv2d(x, weight, None, options);
        };
        let (x, weight) = (contiguous(&x), contiguous(&weight));
        let mut y = vec![0.0; s.batch * s.out_image()];
        let (xs, ws) = (values(&x), values(&weight));
        match kind {
            ConvKind::Dense => train::conv2d_forward(isa(), &s, xs, ws, None, &mut y, threads()),
            ConvKind::Depthwise => {
                train::depthwise_forward(isa(), &s, xs, ws, None, &mut y, threads())
            }
        }
        tensor(y, [s.batch, s.cout, s.oh, s.ow])
    }

    fn effnet_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some((s, kind)) =
            conv_shape(&x, &weight, &options).filter(|_| all_f32(&[&output_grad]))
        else {
            return Self::conv2d_x_backward(x, weight, output_grad, options);
        };
        let (weight, dy) = (contiguous(&weight), contiguous(&output_grad));
        let mut dx = vec![0.0; s.batch * s.in_image()];
        let (ws, dys) = (values(&weight), values(&dy));
        match kind {
            ConvKind::Dense => train::conv2d_backward_data(isa(), &s, ws, dys, &mut dx, threads()),
            ConvKind::Depthwise => {
                train::depthwise_backward_data(isa(), &s, ws, dys, &mut dx, threads())
            }
        }
        tensor(dx, [s.batch, s.cin, s.h, s.w])
    }

    fn effnet_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let Some((s, kind)) =
            conv_shape(&x, &weight, &options).filter(|_| all_f32(&[&output_grad]))
        else {
            return Self::conv2d_weight_backward(x, weight, output_grad, options);
        };
        let (x, dy) = (contiguous(&x), contiguous(&output_grad));
        let mut dw = vec![0.0; weight.shape().num_elements()];
        let (xs, dys) = (values(&x), values(&dy));
        match kind {
            ConvKind::Dense => {
                train::conv2d_backward_weight(isa(), &s, xs, dys, &mut dw, threads())
            }
            ConvKind::Depthwise => {
                train::depthwise_backward_weight(isa(), &s, xs, dys, &mut dw, threads())
            }
        }
        tensor(dw, weight.shape())
    }

    fn effnet_global_avg_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32(&[&x]) || x.shape().num_dims() != 4 {
            return global_avg_pool_composed::<Self>(x);
        }
        let [n, c, h, w] = dims4(&x);
        let x = contiguous(&x);
        let mut out = vec![0.0; n * c];
        train::plane_means(isa(), values(&x), h * w, &mut out, threads());
        tensor(out, [n, c, 1, 1])
    }

    fn effnet_global_avg_pool_backward(
        output_grad: FloatTensor<Self>,
        h: usize,
        w: usize,
    ) -> FloatTensor<Self> {
        if !all_f32(&[&output_grad]) {
            return global_avg_pool_backward_composed::<Self>(output_grad, h, w);
        }
        let [n, c, _, _] = dims4(&output_grad);
        let g = contiguous(&output_grad);
        let mut dx = vec![0.0; n * c * h * w];
        train::plane_means_backward(values(&g), h * w, &mut dx, threads());
        tensor(dx, [n, c, h, w])
    }

    fn effnet_channel_gate(x: FloatTensor<Self>, gate: FloatTensor<Self>) -> FloatTensor<Self> {
        if !all_f32(&[&x, &gate]) || x.shape().num_dims() != 4 {
            return <Self as FloatTensorOps<Self>>::float_mul(x, gate);
        }
        let [n, c, h, w] = dims4(&x);
        let (x, gate) = (contiguous(&x), contiguous(&gate));
        let mut y = vec![0.0; n * c * h * w];
        train::gate_forward(isa(), values(&x), values(&gate), h * w, &mut y, threads());
        tensor(y, [n, c, h, w])
    }

    fn effnet_channel_gate_backward(
        x: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &gate, &output_grad]) || x.shape().num_dims() != 4 {
            return channel_gate_backward_composed::<Self>(x, gate, output_grad);
        }
        let [n, c, h, w] = dims4(&x);
        let (x, gate, dy) = (contiguous(&x), contiguous(&gate), contiguous(&output_grad));
        let (mut dx, mut dg) = (vec![0.0; n * c * h * w], vec![0.0; n * c]);
        let (xs, gs, dys) = (values(&x), values(&gate), values(&dy));
        train::gate_backward(isa(), xs, gs, dys, h * w, &mut dx, &mut dg, threads());
        (tensor(dx, [n, c, h, w]), tensor(dg, [n, c, 1, 1]))
    }

    fn effnet_batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: FusedAct,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        if !all_f32(&[&x, &gamma, &beta]) || x.shape().num_dims() < 2 {
            return batch_norm_act_composed::<Self>(x, gamma, beta, epsilon, act);
        }
        let s = bn_shape(&x, epsilon, act);
        let (x, gamma, beta) = (contiguous(&x), contiguous(&gamma), contiguous(&beta));
        let mut y = vec![0.0; x.shape().num_elements()];
        let (mut mean, mut var) = (vec![0.0; s.channels], vec![0.0; s.channels]);
        train::batch_norm_act_forward(
            isa(),
            &s,
            values(&x),
            values(&gamma),
            values(&beta),
            &mut y,
            &mut mean,
            &mut var,
            threads(),
        );
        (
            tensor(y, x.shape()),
            tensor(mean, [s.channels]),
            tensor(var, [s.channels]),
        )
    }

    fn effnet_batch_norm_act_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
        act: FusedAct,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let tensors = [&x, &gamma, &beta, &mean, &variance, &output_grad];
        if !all_f32(&tensors) || x.shape().num_dims() < 2 {
            return batch_norm_act_backward_composed::<Self>(
                x,
                gamma,
                beta,
                mean,
                variance,
                output_grad,
                epsilon,
                act,
            );
        }
        let s = bn_shape(&x, epsilon, act);
        let [x, gamma, beta, mean, variance, dy] = tensors.map(contiguous);
        let mut dx = vec![0.0; x.shape().num_elements()];
        let (mut dgamma, mut dbeta) = (vec![0.0; s.channels], vec![0.0; s.channels]);
        train::batch_norm_act_backward(
            isa(),
            &s,
            values(&x),
            values(&gamma),
            values(&beta),
            values(&mean),
            values(&variance),
            values(&dy),
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            threads(),
        );
        (
            tensor(dx, x.shape()),
            tensor(dgamma, [s.channels]),
            tensor(dbeta, [s.channels]),
        )
    }
}
