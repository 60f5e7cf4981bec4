//! ImageNet-1k class names in the usual index order (torchvision's list, BSD-3-Clause).

use std::path::Path;

use crate::Error;

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

/// Reads a label file: one class name per line, in index order (trailing blank lines and
/// Windows line ends are ignored). `classes`, when given, must match the number of names.
pub fn read_labels(path: &Path, classes: Option<usize>) -> Result<Vec<String>, Error> {
    let err = |reason: String| Error::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read labels: {e}")))?;
    let mut labels: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    while labels.last().is_some_and(|l| l.trim().is_empty()) {
        labels.pop();
    }
    if labels.is_empty() {
        return Err(err("no labels in file".into()));
    }
    match classes {
        Some(n) if n != labels.len() => Err(err(format!(
            "{} labels for a model with {n} classes",
            labels.len()
        ))),
        _ => Ok(labels),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_files_are_one_name_per_line_and_counted() {
        let dir = std::env::temp_dir().join(format!("effnet-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("labels.txt");
        std::fs::write(&path, "cat\r\nhot dog, frankfurter\n\n").unwrap();
        assert_eq!(
            read_labels(&path, Some(2)).unwrap(),
            ["cat", "hot dog, frankfurter"]
        );
        let err = read_labels(&path, Some(3)).unwrap_err().to_string();
        assert!(err.contains("2 labels for a model with 3 classes"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            read_labels(&path, None)
                .unwrap_err()
                .to_string()
                .contains("no labels")
        );
        let missing = dir.join("missing.txt");
        let err = read_labels(&missing, None).unwrap_err().to_string();
        assert!(err.contains("missing.txt"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
