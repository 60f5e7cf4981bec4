//! ImageNet-format folders (`root/<split>/<class>/*.jpg`), indexed like torchvision's `ImageFolder`:
//! classes are the sub-folder names in sorted order, so label indices agree with PyTorch-trained
//! checkpoints and with the class list saved next to our own.

use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::image_io::collect_images;

/// A labelled image folder: one sub-folder per class.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolder {
    /// The scanned folder (e.g. `root/train`).
    pub root: PathBuf,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Every image file with its label, class by class, files sorted.
    pub samples: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Scans `root/<class>/**` for images (jpg, jpeg, png, webp, bmp). Refuses a missing folder, a
    /// tree without images, or one with fewer than two classes, naming the folder in the error.
    pub fn scan(root: &Path) -> Result<Self, DataError> {
        let classes = class_dirs(root)?;
        Self::scan_with_classes(root, &classes)
    }

    /// Scans with a given class list (e.g. the train split's, for val), so labels line up even when
    /// a class folder is missing here. Folders not in the list are ignored.
    pub fn scan_with_classes(root: &Path, classes: &[String]) -> Result<Self, DataError> {
        let err = |reason: String| DataError::Dataset {
            path: root.to_path_buf(),
            reason,
        };
        if !root.is_dir() {
            return Err(err(
                "no such folder (expected <root>/<class>/<images>)".into()
            ));
        }
        if classes.len() < 2 {
            return Err(err(format!(
                "found {} class folder(s); a classifier needs at least 2 (expected <root>/<class>/<images>)",
                classes.len()
            )));
        }
        let mut samples = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            if !dir.is_dir() {
                continue;
            }
            let (files, _) = collect_images(&[dir]);
            samples.extend(files.into_iter().map(|f| (f, label)));
        }
        if samples.is_empty() {
            return Err(err(format!(
                "no images (jpg, jpeg, png, webp, bmp) in any of its {} class folders",
                classes.len()
            )));
        }
        let ds = Self {
            root: root.to_path_buf(),
            classes: classes.to_vec(),
            samples,
        };
        let populated = ds.class_counts().iter().filter(|(_, n)| *n > 0).count();
        if populated < 2 {
            return Err(err(format!(
                "only {populated} class folder has images; a classifier needs at least 2"
            )));
        }
        Ok(ds)
    }

    /// Images per class, in label order (zero for empty class folders), for the scan report.
    pub fn class_counts(&self) -> Vec<(String, usize)> {
        let mut counts = vec![0usize; self.classes.len()];
        for (_, l) in &self.samples {
            counts[*l] += 1;
        }
        self.classes.iter().cloned().zip(counts).collect()
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples (never true for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// A one-paragraph scan report: totals and per-class counts, flagging empty classes.
    pub fn report(&self) -> String {
        let counts = self.class_counts();
        let empty: Vec<&str> = counts
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(c, _)| c.as_str())
            .collect();
        let (min, max) = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .fold((usize::MAX, 0), |(a, b), (_, n)| (a.min(*n), b.max(*n)));
        let mut s = format!(
            "{}: {} images in {} classes ({}..{} per class)",
            self.root.display(),
            self.samples.len(),
            self.classes.len(),
            min,
            max
        );
        if !empty.is_empty() {
            s.push_str(&format!("; {} empty: {}", empty.len(), empty.join(", ")));
        }
        s
    }

    /// Writes the class list, one name per line in label order (what inference needs for names).
    pub fn save_classes(&self, path: &Path) -> Result<(), DataError> {
        let mut text = self.classes.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|e| DataError::Dataset {
            path: path.to_path_buf(),
            reason: format!("cannot write class list ({e})"),
        })
    }
}

/// Reads a class list written by [`ImageFolder::save_classes`].
pub fn load_classes(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Dataset {
        path: path.to_path_buf(),
        reason: format!("cannot read class list ({e})"),
    })?;
    Ok(text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Sorted names of the sub-folders of `root` (torchvision's `find_classes`; hidden folders skipped).
pub fn class_dirs(root: &Path) -> Result<Vec<String>, DataError> {
    let rd = std::fs::read_dir(root).map_err(|e| DataError::Dataset {
        path: root.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such folder (expected <root>/<class>/<images>)".into()
            }
            _ => format!("cannot list folder ({e})"),
        },
    })?;
    let mut classes: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !n.starts_with('.'))
        .collect();
    classes.sort();
    Ok(classes)
}

/// The train and val splits of an ImageNet-format root, val labelled with train's classes.
#[derive(Clone, Debug)]
pub struct ImageNetFolders {
    /// `root/<train_split>`.
    pub train: ImageFolder,
    /// `root/<val_split>`, if that folder exists.
    pub val: Option<ImageFolder>,
}

impl ImageNetFolders {
    /// Opens `root/<train_split>` and (if present) `root/<val_split>` with the train class list;
    /// a val folder with a class train lacks is an error (its labels would be meaningless).
    pub fn open(root: &Path, train_split: &str, val_split: &str) -> Result<Self, DataError> {
        let train = ImageFolder::scan(&root.join(train_split))?;
        let val_dir = root.join(val_split);
        let val = if val_dir.is_dir() {
            let extra: Vec<String> = class_dirs(&val_dir)?
                .into_iter()
                .filter(|c| !train.classes.contains(c))
                .collect();
            if !extra.is_empty() {
                return Err(DataError::Dataset {
                    path: val_dir,
                    reason: format!(
                        "class folder(s) not in the train split: {}",
                        extra.join(", ")
                    ),
                });
            }
            Some(ImageFolder::scan_with_classes(&val_dir, &train.classes)?)
        } else {
            None
        };
        Ok(Self { train, val })
    }
}
