//! Losses and accuracy: soft-target cross entropy (mixup, cutmix and label smoothing all produce
//! soft targets, which burn's `CrossEntropyLoss` does not accept) and top-k counting.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// `mean_over_batch(sum_over_classes(-targets * log_softmax(logits)))`.
pub fn soft_target_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    (targets * log_softmax(logits, 1))
        .sum()
        .neg()
        .div_scalar(b as f64)
        .reshape([1])
}

/// Per-sample results of an evaluation batch computed on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TopK {
    /// Samples seen.
    pub count: usize,
    /// Samples whose label is the arg-max.
    pub top1: usize,
    /// Samples whose label is among the 5 largest logits.
    pub top5: usize,
    /// Sum of hard-label cross-entropy.
    pub loss_sum: f64,
}

impl TopK {
    /// Accumulates a batch of row-major logits `[labels.len(), classes]`.
    pub fn add(&mut self, logits: &[f32], labels: &[usize], classes: usize) {
        for (row, &label) in logits.chunks(classes).zip(labels) {
            let target = row[label];
            let higher = row.iter().filter(|&&v| v > target).count();
            self.count += 1;
            self.top1 += usize::from(higher == 0);
            self.top5 += usize::from(higher < 5);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            self.loss_sum += lse - target as f64;
        }
    }

    /// Top-1 accuracy in percent.
    pub fn top1_pct(&self) -> f64 {
        100.0 * self.top1 as f64 / self.count.max(1) as f64
    }

    /// Top-5 accuracy in percent.
    pub fn top5_pct(&self) -> f64 {
        100.0 * self.top5 as f64 / self.count.max(1) as f64
    }

    /// Mean cross-entropy.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_ce_equals_hard_ce_for_one_hot_and_handles_mixed_targets() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_floats([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], &dev);
        let onehot = Tensor::<2>::from_floats([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], &dev);
        let soft: f32 = soft_target_cross_entropy(logits.clone(), onehot).into_scalar();
        let mut k = TopK::default();
        k.add(&[2.0, 0.5, -1.0, 0.1, 0.2, 0.3], &[0, 2], 3);
        assert!(
            (soft as f64 - k.loss()).abs() < 1e-5,
            "{soft} vs {}",
            k.loss()
        );
        assert_eq!((k.top1, k.top5), (2, 2));
        // 50/50 target on row 0: loss is the mean of the two hard losses of that row.
        let mixed = Tensor::<2>::from_floats([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], &dev);
        let m: f32 = soft_target_cross_entropy(logits, mixed).into_scalar();
        let lse0 = (2f64.exp() + 0.5f64.exp() + (-1f64).exp()).ln();
        let lse1 = (0.1f64.exp() + 0.2f64.exp() + 0.3f64.exp()).ln();
        let want = ((lse0 - 2.0) * 0.5 + (lse0 - 0.5) * 0.5 + (lse1 - 0.3)) / 2.0;
        assert!((m as f64 - want).abs() < 1e-5);
    }
}
