//! Class names and ids, in one place: ImageNet-1k's names in the usual index order
//! (torchvision's list, BSD-3-Clause) and WordNet ids with their lemmas (timm's lists), label
//! files, timm's class maps, and matching class folders (`n02123159/`, `tiger cat/`) to a
//! model's class indices.

use std::collections::HashMap;
use std::path::Path;

use crate::Error;

/// The 1000 names, one per line, index order.
const IMAGENET_TEXT: &str = include_str!("../data/imagenet_classes.txt");

/// The 1000 WordNet ids with their lemmas (`n01440764<TAB>tench, Tinca tinca`), index order.
const IMAGENET_SYNSETS: &str = include_str!("../data/imagenet_synsets.txt");

/// ImageNet-1k class names; `imagenet_labels()[282] == "tiger cat"`.
pub fn imagenet_labels() -> Vec<String> {
    IMAGENET_TEXT.lines().map(str::to_string).collect()
}

/// ImageNet-1k WordNet ids in class index order; `imagenet_synsets()[282] == "n02123159"`.
pub fn imagenet_synsets() -> Vec<String> {
    synset_lines().map(|(id, _)| id.to_string()).collect()
}

/// ImageNet-1k WordNet lemmas in class index order (`"tench, Tinca tinca"`), as timm's
/// `ImageNetInfo` describes the classes.
pub fn imagenet_lemmas() -> Vec<String> {
    synset_lines().map(|(_, l)| l.to_string()).collect()
}

fn synset_lines() -> impl Iterator<Item = (&'static str, &'static str)> {
    IMAGENET_SYNSETS
        .lines()
        .map(|l| l.split_once('\t').unwrap_or((l, "")))
}

/// Whether `s` is spelled as a WordNet noun id (`n` and eight digits, as ImageNet folders are).
pub fn is_wordnet_id(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The WordNet ids of a model's classes, when they are ImageNet-1k's: its names are ImageNet's
/// names or ImageNet's ids, in index order. `None` for any other class list.
pub fn imagenet_class_ids(labels: &[String]) -> Option<Vec<String>> {
    let ids = imagenet_synsets();
    (labels == imagenet_labels().as_slice() || labels == ids.as_slice()).then_some(ids)
}

/// Readable names for class names that are ImageNet-1k's WordNet ids (timm's Hub configs list
/// the ids as `label_names`): ImageNet's names; other lists are returned unchanged.
pub fn readable_labels(labels: Vec<String>) -> Vec<String> {
    if labels == imagenet_synsets() {
        imagenet_labels()
    } else {
        labels
    }
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

/// Reads timm's `--class-map` file: one class folder name per line, the line number (from 0)
/// being its class index. Blank lines keep their index; names must be unique.
pub fn read_class_map(path: &Path) -> Result<Vec<(String, usize)>, Error> {
    let err = |reason: String| Error::Labels {
        path: path.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("cannot read class map: {e}")))?;
    let mut seen = HashMap::new();
    let mut map = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(name.to_string(), i) {
            return Err(err(format!(
                "'{name}' is on lines {} and {}",
                first + 1,
                i + 1
            )));
        }
        map.push((name.to_string(), i));
    }
    if map.is_empty() {
        return Err(err("no class names in the class map".into()));
    }
    Ok(map)
}

/// Why a class folder matched no class, or more than one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderMatch {
    /// The folder is this class.
    Class(usize),
    /// No class has this id or name.
    Unknown,
    /// Several classes share this name (e.g. ImageNet's two `crane` lemmas).
    Ambiguous(Vec<usize>),
}

/// Matches class folder names with a model's classes, as a timm user names them: the WordNet
/// id (`n02123159`), the class name stored with the weights (`tiger cat`, also `tiger_cat`),
/// or, for ImageNet-1k, any of the class's WordNet lemmas (`tench` or `Tinca tinca`).
/// Case does not matter; an id or a stored name wins over a lemma.
pub struct ClassMatcher {
    /// Normalised name -> classes, per rank (ids and stored names first, then lemmas).
    ranks: [HashMap<String, Vec<usize>>; 2],
}

impl ClassMatcher {
    /// A matcher for a model whose classes are `labels` (index order).
    pub fn new(labels: &[String]) -> Self {
        let mut ranks = [HashMap::new(), HashMap::new()];
        let mut add = |rank: usize, name: &str, i: usize| {
            let v: &mut Vec<usize> = ranks[rank].entry(normalise(name)).or_default();
            if !v.contains(&i) {
                v.push(i);
            }
        };
        for (i, l) in labels.iter().enumerate() {
            add(0, l, i);
        }
        if imagenet_class_ids(labels).is_some() {
            for (i, (id, lemmas)) in synset_lines().enumerate() {
                add(0, id, i);
                add(1, lemmas, i);
                for lemma in lemmas.split(',') {
                    add(1, lemma, i);
                }
            }
        }
        Self { ranks }
    }

    /// The class a folder name stands for.
    pub fn find(&self, folder: &str) -> FolderMatch {
        let key = normalise(folder);
        for rank in &self.ranks {
            match rank.get(&key).map(Vec::as_slice) {
                Some([i]) => return FolderMatch::Class(*i),
                Some(many) if many.len() > 1 => return FolderMatch::Ambiguous(many.to_vec()),
                _ => {}
            }
        }
        FolderMatch::Unknown
    }
}

/// Case, `_` for spaces and surrounding blanks do not tell names apart.
fn normalise(name: &str) -> String {
    name.trim().replace('_', " ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_ids_names_and_lemmas_agree_by_index() {
        let (ids, names, lemmas) = (imagenet_synsets(), imagenet_labels(), imagenet_lemmas());
        assert_eq!((ids.len(), names.len(), lemmas.len()), (1000, 1000, 1000));
        assert!(ids.iter().all(|s| is_wordnet_id(s)));
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "index order is sorted ids"
        );
        assert_eq!(
            (ids[282].as_str(), names[282].as_str()),
            ("n02123159", "tiger cat")
        );
        assert_eq!(lemmas[0], "tench, Tinca tinca");
        assert_eq!(imagenet_class_ids(&names), Some(ids.clone()));
        assert_eq!(imagenet_class_ids(&ids), Some(ids.clone()));
        assert_eq!(imagenet_class_ids(&names[..10]), None);
        assert_eq!(readable_labels(ids), names);
    }

    #[test]
    fn folders_match_by_id_name_or_lemma() {
        let m = ClassMatcher::new(&imagenet_labels());
        assert_eq!(m.find("n02123159"), FolderMatch::Class(282));
        assert_eq!(m.find("tiger cat"), FolderMatch::Class(282));
        assert_eq!(m.find("Tiger_Cat"), FolderMatch::Class(282));
        assert_eq!(m.find("Tinca tinca"), FolderMatch::Class(0));
        assert_eq!(m.find("n99999999"), FolderMatch::Unknown);
        // "crane" is a stored name (index 517), so it wins over the bird's lemma.
        assert_eq!(m.find("crane"), FolderMatch::Class(517));
        let digits: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let m = ClassMatcher::new(&digits);
        assert_eq!(m.find("7"), FolderMatch::Class(7));
        assert_eq!(m.find("n02123159"), FolderMatch::Unknown);
    }

    #[test]
    fn class_maps_are_one_folder_name_per_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.txt");
        std::fs::write(&path, "n01440764\n\nn02123159\n").unwrap();
        let map = read_class_map(&path).unwrap();
        assert_eq!(map, [("n01440764".into(), 0), ("n02123159".into(), 2)]);
        std::fs::write(&path, "a\nb\na\n").unwrap();
        let e = read_class_map(&path).unwrap_err().to_string();
        assert!(e.contains("lines 1 and 3"), "{e}");
    }

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
