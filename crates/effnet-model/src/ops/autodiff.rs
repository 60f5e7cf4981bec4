//! [`TrainOps`] under autodiff: each op is one node of the graph whose backward calls the inner
//! backend's backward methods (effnet-cpu's kernels on Flex, burn's composition on CubeCL), in
//! place of the dozen nodes burn's own composition records for a BatchNorm + activation.
//!
//! The backward methods themselves keep their default (composed, differentiable) bodies here:
//! nothing differentiates through a backward.

use burn::backend::AutodiffBackend;
use burn::backend::TensorMetadata;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::tensor::ops::ConvOptions;

use super::backend::{FusedAct, TrainOps};

/// Backward of a conv without bias: parents (input, weight).
#[derive(Debug)]
struct Conv2dBackward;

/// State of the conv backward: the forward's input, weight and options.
type ConvState<B> = (FloatTensor<B>, FloatTensor<B>, ConvOptions<2>);

/// Registers the input and weight gradients of a conv, where their nodes need them.
fn conv_input_grads<B: TrainOps>(
    [node_x, node_w]: [Option<NodeId>; 2],
    (x, weight, options): ConvState<B>,
    grad: FloatTensor<B>,
    grads: &mut Gradients,
) {
    if let Some(id) = node_x {
        let dx =
            B::effnet_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
        grads.register::<B>(id, dx);
    }
    if let Some(id) = node_w {
        let dw = B::effnet_conv2d_weight_backward(x, weight, grad, options);
        grads.register::<B>(id, dw);
    }
}

impl<B: TrainOps> Backward<B, 2> for Conv2dBackward {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let ids = ops.parents.map(|p| p.map(|n| n.id));
        conv_input_grads::<B>(ids, ops.state, grad, grads);
    }
}

/// Backward of the global average pool: parent (input); state: its height and width.
#[derive(Debug)]
struct GlobalAvgPoolBackward;

impl<B: TrainOps> Backward<B, 1> for GlobalAvgPoolBackward {
    type State = (usize, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            let (h, w) = ops.state;
            grads.register::<B>(node.id, B::effnet_global_avg_pool_backward(grad, h, w));
        }
    }
}

/// Backward of the channel gate: parents (input, gate); state: both.
#[derive(Debug)]
struct ChannelGateBackward;

impl<B: TrainOps> Backward<B, 2> for ChannelGateBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gate] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gate) = ops.state;
        let (dx, dgate) = B::effnet_channel_gate_backward(x, gate, grad);
        for (node, g) in [(node_x, dx), (node_gate, dgate)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Backward of BatchNorm + activation: parents (input, gamma, beta).
#[derive(Debug)]
struct BatchNormActBackward;

impl<B: TrainOps> Backward<B, 3> for BatchNormActBackward {
    /// Input, gamma, beta, batch mean, batch variance, epsilon, activation.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        f64,
        FusedAct,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, mean, var, epsilon, act) = ops.state;
        let (dx, dgamma, dbeta) =
            B::effnet_batch_norm_act_backward(x, gamma, beta, mean, var, grad, epsilon, act);
        for (node, g) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: TrainOps, C: CheckpointStrategy> TrainOps for Autodiff<B, C> {
    fn effnet_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
                let y = B::effnet_conv2d(xp.clone(), wp.clone(), options.clone());
                prep.finish((xp, wp, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::effnet_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    fn effnet_global_avg_pool(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let s = x.primitive().shape();
        let (h, w) = (s[2], s[3]);
        match GlobalAvgPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((h, w), B::effnet_global_avg_pool(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::effnet_global_avg_pool(x.into_primitive())),
        }
    }

    fn effnet_channel_gate(x: FloatTensor<Self>, gate: FloatTensor<Self>) -> FloatTensor<Self> {
        match ChannelGateBackward
            .prepare::<C>([x.node(), gate.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, gp) = (x.primitive().clone(), gate.primitive().clone());
                let y = B::effnet_channel_gate(xp.clone(), gp.clone());
                prep.finish((xp, gp), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::effnet_channel_gate(
                x.into_primitive(),
                gate.into_primitive(),
            )),
        }
    }

    fn effnet_batch_norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: FusedAct,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormActBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let xp = x.primitive().clone();
                let gp = gamma.primitive().clone();
                let bp = beta.primitive().clone();
                let (y, mean, var) =
                    B::effnet_batch_norm_act(xp.clone(), gp.clone(), bp.clone(), epsilon, act);
                let state = (xp, gp, bp, mean.clone(), var.clone(), epsilon, act);
                let y = prep.finish(state, y);
                (y, Self::from_inner(mean), Self::from_inner(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = B::effnet_batch_norm_act(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                    act,
                );
                (
                    prep.finish(y),
                    Self::from_inner(mean),
                    Self::from_inner(var),
                )
            }
        }
    }
}
