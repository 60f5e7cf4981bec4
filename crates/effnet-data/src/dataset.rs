//! ImageNet-format folders (`root/<split>/<class>/*.jpg`), indexed like torchvision's `ImageFolder`:
//! classes are the sub-folder names in sorted order, so label indices agree with PyTorch-trained
//! checkpoints and with the class list saved next to our own.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::DataError;
use crate::image_io::{ImageWalker, probe_image};

/// A labelled image folder: one sub-folder per class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageFolder {
    /// The scanned folder (e.g. `root/train`).
    pub root: PathBuf,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Every readable image file with its label, class by class, files sorted.
    pub samples: Vec<(PathBuf, usize)>,
    /// Files with an image extension that failed the scan-time check (corrupt, truncated, over the
    /// decoding limits...), with the reason; they are not in `samples`.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl ImageFolder {
    /// Scans `root/<class>/**` for images (jpg, jpeg, png, webp, bmp). Every file is checked
    /// without decoding its pixels ([`probe_image`]: complete structure, header, size limits), in
    /// parallel; unreadable files go to [`unreadable`](Self::unreadable) instead of `samples`.
    /// Refuses a missing folder, a tree without images, one with fewer than two classes, or a class
    /// whose files are all unreadable, naming the folder or class in the error. Directory symlinks
    /// into an ancestor or an already walked folder are not followed.
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
        let folders: Vec<(String, usize)> = classes.iter().cloned().zip(0..).collect();
        let ds = Self::scan_mapped(root, classes.to_vec(), &folders)?;
        let populated = ds.class_counts().iter().filter(|(_, n)| *n > 0).count();
        if populated < 2 {
            return Err(err(format!(
                "only {populated} class folder has images; a classifier needs at least 2"
            )));
        }
        Ok(ds)
    }

    /// Scans `root/<folder>/` for each `(folder, label)` of `folders`: a labelled folder whose
    /// folder names are not the class names (`n02123159/` for class 282 `tiger cat`, a class map,
    /// a subset of a model's classes). `classes` are the names of all labels.
    pub fn scan_mapped(
        root: &Path,
        classes: Vec<String>,
        folders: &[(String, usize)],
    ) -> Result<Self, DataError> {
        let err = |reason: String| DataError::Dataset {
            path: root.to_path_buf(),
            reason,
        };
        if let Some((f, l)) = folders.iter().find(|(_, l)| *l >= classes.len()) {
            return Err(err(format!(
                "folder '{f}' labelled {l}, but there are {} classes",
                classes.len()
            )));
        }
        let (samples, unreadable) = scan_class_files(root, folders)?;
        if samples.is_empty() && unreadable.is_empty() {
            return Err(err(format!(
                "no images (jpg, jpeg, png, webp, bmp) in any of its {} class folders",
                folders.len()
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes,
            samples,
            unreadable,
        })
    }

    /// Images per class, in label order (zero for empty class folders), for the scan report.
    pub fn class_counts(&self) -> Vec<(String, usize)> {
        let mut counts = vec![0usize; self.classes.len()];
        for (_, l) in &self.samples {
            counts[*l] += 1;
        }
        self.classes.iter().cloned().zip(counts).collect()
    }

    /// Number of files found but not readable (corrupt, truncated, over the limits), for the run's
    /// summary and logs; the files and reasons are in [`unreadable`](Self::unreadable).
    pub fn unreadable_count(&self) -> usize {
        self.unreadable.len()
    }

    /// One `warning: skipping FILE: REASON` line per unreadable file, for the caller to print once
    /// per scan (the loader never sees these files, so there is no per-epoch repetition).
    pub fn unreadable_warnings(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .map(|(p, why)| {
                crate::error::one_line(&format!("warning: skipping {}: {why}", p.display()))
            })
            .collect()
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
        if !self.unreadable.is_empty() {
            s.push_str(&format!(
                "; {} unreadable file(s) skipped",
                self.unreadable.len()
            ));
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

/// Lists each class's files (one walk that never enters a folder twice) and probes them in
/// parallel: (readable samples with labels, unreadable files with reasons). A class whose files
/// are all unreadable is an error naming it, like a class without images.
#[allow(clippy::type_complexity)]
fn scan_class_files(
    root: &Path,
    folders: &[(String, usize)],
) -> Result<(Vec<(PathBuf, usize)>, Vec<(PathBuf, String)>), DataError> {
    let mut walker = ImageWalker::default();
    walker.reserve(root);
    for (class, _) in folders {
        walker.reserve(&root.join(class));
    }
    let mut samples = Vec::new();
    let mut unreadable = Vec::new();
    for &(ref class, label) in folders {
        let dir = root.join(class);
        if !dir.is_dir() {
            continue;
        }
        let files = walker.images_under(&dir);
        let checked: Vec<Result<(), String>> = files
            .par_iter()
            .map(|f| probe_image(f).map(|_| ()).map_err(image_reason))
            .collect();
        let before = unreadable.len();
        for (f, r) in files.iter().zip(checked) {
            match r {
                Ok(()) => samples.push((f.clone(), label)),
                Err(why) => unreadable.push((f.clone(), why)),
            }
        }
        let bad = unreadable.len() - before;
        if bad > 0 && bad == files.len() {
            let (first, why) = &unreadable[before];
            return Err(DataError::Dataset {
                path: dir,
                reason: format!(
                    "class '{class}': all {bad} image file(s) are unreadable (e.g. {}: {why})",
                    first.display()
                ),
            });
        }
    }
    Ok((samples, unreadable))
}

fn image_reason(e: DataError) -> String {
    match e {
        DataError::Image { reason, .. } => crate::error::one_line(&reason),
        other => other.to_string(),
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
