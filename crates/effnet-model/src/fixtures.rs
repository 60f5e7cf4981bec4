//! Weight-free parity fixtures: the seeded parameter stream that `scripts/timm_family.py` uses
//! to fill timm's models, implemented identically here, so a test rebuilds the very same weights
//! from a seed and only BatchNorm statistics and logits are committed.
//!
//! For every tensor of timm's `state_dict` (timm's key, timm's shape), the values are drawn from
//! SplitMix64 seeded with `FNV-1a-64(key) ^ SEED`: `u = 2·(z >> 11)·2⁻⁵³ − 1 ∈ [−1, 1)`, then
//! rank ≥ 2: `u·sqrt(3 / fan_in)` with `fan_in = Π shape[1..]`; rank 1 `*.bias`: `0.1·u`; other
//! rank 1 (norm weights, EvoNorm `v`): `1 + 0.25·u`; computed in f64 and rounded once to f32.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::burn_pack::{self, Bytes, DType};
use burn::store::{ModuleStore, SafetensorsStore};

use crate::config::EfficientNetConfig;
use crate::error::ModelError;
use crate::weights::{Imported, import_state_dict, timm_state_dict_shapes};

/// The seed both sides use.
pub const SEED: u64 = 0x0E1F_F1E7_2026_0019;

/// FNV-1a, 64 bits.
pub fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// SplitMix64 from `state`.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next value in `[-1, 1)`.
    pub fn next_uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (2.0f64).powi(-53) * 2.0 - 1.0
    }
}

/// The values the fixture script draws for timm tensor `key` of `shape`.
pub fn fill_values(key: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64(fnv1a64(key) ^ SEED);
    let (scale, offset) = if shape.len() >= 2 {
        let fan_in: usize = shape[1..].iter().product();
        ((3.0 / fan_in as f64).sqrt(), 0.0)
    } else if key.ends_with(".bias") {
        (0.1, 0.0)
    } else {
        (0.25, 1.0)
    };
    (0..n)
        .map(|_| (rng.next_uniform() * scale + offset) as f32)
        .collect()
}

/// An f32 tensor named `key` for [`crate::weights::import_state_dict`].
pub fn f32_tensor(key: &str, shape: &[usize], values: &[f32]) -> burn_pack::Tensor {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    burn_pack::Tensor::new(
        key.to_string(),
        DType::F32,
        shape.to_vec(),
        None,
        Bytes::from_bytes_vec(bytes),
    )
}

/// timm's state dict for a network with these `(key, shape)` entries: drawn parameters, and
/// the BatchNorm statistics from `stats` (keyed by timm name).
pub fn synthetic_state_dict(
    shapes: &[(String, Vec<usize>)],
    stats: &BTreeMap<String, Vec<f32>>,
) -> Result<BTreeMap<String, burn_pack::Tensor>, String> {
    let mut out = BTreeMap::new();
    for (key, shape) in shapes {
        let values = if key.ends_with("running_mean") || key.ends_with("running_var") {
            let v = stats
                .get(key)
                .ok_or_else(|| format!("no BatchNorm statistic '{key}' in the fixture"))?;
            if v.len() != shape.iter().product::<usize>() {
                return Err(format!(
                    "'{key}': fixture has {} values for {shape:?}",
                    v.len()
                ));
            }
            v.clone()
        } else {
            fill_values(key, shape)
        };
        out.insert(key.clone(), f32_tensor(key, shape, &values));
    }
    Ok(out)
}

/// Decodes IEEE half-precision values (the fixtures store BatchNorm statistics as f16).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1F);
    let frac = f32::from(bits & 0x3FF);
    sign * match exp {
        0 => frac * (2.0f32).powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * (2.0f32).powi(e - 15),
    }
}

/// Input side of the fixtures (`input_72.safetensors`): odd feature-map sizes deep in the
/// network, so TF "same" padding is exercised both ways.
pub const FIXTURE_SIZE: usize = 72;

/// One architecture's fixture (`<arch>.safetensors`): timm's BatchNorm statistics and logits.
pub struct Fixture {
    /// timm architecture (the file's stem).
    pub arch: String,
    /// Measured BatchNorm statistics by timm key.
    pub stats: BTreeMap<String, Vec<f32>>,
    /// timm's logits on the input, `[2 × classes]`.
    pub logits: Vec<f32>,
}

fn read_err(path: &Path, reason: String) -> ModelError {
    ModelError::Read {
        path: path.to_path_buf(),
        reason,
    }
}

/// Every tensor of a safetensors file as f32 values (f16 widened), by name.
fn read_f32_tensors(path: &Path) -> Result<BTreeMap<String, (Vec<f32>, Vec<usize>)>, ModelError> {
    let mut store = SafetensorsStore::from_file(path);
    let tensors = store
        .get_all_tensors()
        .map_err(|e| read_err(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let bytes = t.to_bytes().map_err(|e| read_err(path, e.to_string()))?;
        let values: Vec<f32> = match t.dtype {
            DType::F16 => (bytes.chunks_exact(2))
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::F32 => (bytes.chunks_exact(4))
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            other => return Err(read_err(path, format!("{name}: unexpected {other:?}"))),
        };
        out.insert(name.clone(), (values, t.shape.to_vec()));
    }
    Ok(out)
}

/// The fixture architectures in `dir` (every `<arch>.safetensors` but the inputs), sorted.
pub fn fixtures_in(dir: &Path) -> Result<Vec<String>, ModelError> {
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e.to_string()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with("input_"))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads `dir/<arch>.safetensors`.
pub fn read_fixture(dir: &Path, arch: &str) -> Result<Fixture, ModelError> {
    let path = dir.join(format!("{arch}.safetensors"));
    let mut tensors = read_f32_tensors(&path)?;
    let (logits, _) = tensors
        .remove("logits")
        .ok_or_else(|| read_err(&path, "no logits".into()))?;
    let stats = tensors.into_iter().map(|(k, (v, _))| (k, v)).collect();
    Ok(Fixture {
        arch: arch.to_string(),
        stats,
        logits,
    })
}

/// The shared input batch `dir/input_<FIXTURE_SIZE>.safetensors` (two real crops, normalised).
pub fn read_input(dir: &Path, device: &Device) -> Result<Tensor<4>, ModelError> {
    let path: PathBuf = dir.join(format!("input_{FIXTURE_SIZE}.safetensors"));
    let (values, shape) = read_f32_tensors(&path)?
        .remove("input")
        .ok_or_else(|| read_err(&path, "no input".into()))?;
    let dims: [usize; 4] = shape
        .try_into()
        .map_err(|_| read_err(&path, "input is not 4-D".into()))?;
    Ok(Tensor::from_data(TensorData::new(values, dims), device))
}

/// The fixture's architecture with the seeded weights and the fixture's statistics, imported
/// through the same path as a timm checkpoint (key mapping, adapters, checks).
pub fn fixture_model(
    dir: &Path,
    fixture: &Fixture,
    device: &Device,
) -> Result<Imported, ModelError> {
    let cfg = EfficientNetConfig::preset(&fixture.arch)?;
    let shapes = timm_state_dict_shapes(&cfg.init(device));
    let origin = dir.join(format!("{}.safetensors", fixture.arch));
    let tensors =
        synthetic_state_dict(&shapes, &fixture.stats).map_err(|e| read_err(&origin, e))?;
    import_state_dict(&origin, tensors, &cfg, device)
}

/// Largest |a − b| over two equally long slices (NaN counts as infinite).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { m.max(d) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // SplitMix64 seeded with 0: the published first outputs.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(fnv1a64(""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xAF63_DC4C_8601_EC8C);
    }

    #[test]
    fn half_precision_decodes() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2.0f32.powi(-24));
        assert!(f16_to_f32(0x7C00).is_infinite());
    }
}
