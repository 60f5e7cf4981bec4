//! ImageNet-1k class names in the usual index order (torchvision's list, BSD-3-Clause).

/// The 1000 names, one per line, index order.
const IMAGENET_TEXT: &str = include_str!("../data/imagenet_classes.txt");

/// ImageNet-1k class names; `imagenet_labels()[282] == "tiger cat"`.
pub fn imagenet_labels() -> Vec<String> {
    IMAGENET_TEXT.lines().map(str::to_string).collect()
}

/// Names for `n` classes: ImageNet's for 1000, else `class_0`, `class_1`, ...
pub fn default_labels(n: usize) -> Vec<String> {
    let imagenet = imagenet_labels();
    if n == imagenet.len() {
        imagenet
    } else {
        (0..n).map(|i| format!("class_{i}")).collect()
    }
}
