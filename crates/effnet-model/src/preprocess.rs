//! [`PreprocessOverrides`]: a user's changes to the preprocessing stored with the weights
//! (timm's `--img-size`, `--crop-pct`, `--interpolation`, `--mean`, `--std`), shared by every
//! front end so each flag means the same everywhere.

use effnet_data::{Interpolation, Preprocess};

use crate::error::ModelError;

/// Changes to a [`Preprocess`]; `None` keeps the stored value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreprocessOverrides {
    /// Input (crop) size in pixels; the resize keeps the stored crop fraction.
    pub size: Option<usize>,
    /// Crop fraction: the shorter side is resized to `floor(size / crop_pct)`, then center-cropped.
    pub crop_pct: Option<f64>,
    /// Resize filter.
    pub interpolation: Option<Interpolation>,
    /// Channel mean on the 0..1 scale.
    pub mean: Option<[f32; 3]>,
    /// Channel std on the 0..1 scale.
    pub std: Option<[f32; 3]>,
}

fn invalid(message: String) -> ModelError {
    ModelError::Preprocess(message)
}

impl PreprocessOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `base` with the overrides applied; impossible values are errors naming the setting.
    pub fn apply(&self, mut p: Preprocess) -> Result<Preprocess, ModelError> {
        if let Some(size) = self.size {
            if !(1..=effnet_data::MAX_INPUT_SIDE).contains(&size) {
                return Err(invalid(format!(
                    "image size {size} is outside 1..={}",
                    effnet_data::MAX_INPUT_SIDE
                )));
            }
            let pct = p.crop_pct();
            p.crop = size;
            p.resize = ((size as f64 / pct).floor() as usize).max(size);
        }
        if let Some(pct) = self.crop_pct {
            if !(pct > 0.0 && pct <= 1.0) {
                return Err(invalid(format!("crop-pct must be in (0, 1], got {pct}")));
            }
            p = p.with_crop_pct(pct);
        }
        if let Some(i) = self.interpolation {
            p.interpolation = i;
        }
        if let Some(mean) = self.mean {
            if mean.iter().any(|m| !m.is_finite()) {
                return Err(invalid(format!("mean {mean:?} must be finite")));
            }
            p.mean = mean;
        }
        if let Some(std) = self.std {
            if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(invalid(format!("std {std:?} must be positive")));
            }
            p.std = std;
        }
        p.validate()
            .map_err(|e| invalid(format!("{e} (check the image size and crop-pct)")))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_keeps_crop_fraction_and_bad_values_are_errors() {
        let base = Preprocess::imagenet(224, 0.875, Interpolation::Bicubic);
        let p = PreprocessOverrides {
            size: Some(192),
            ..Default::default()
        }
        .apply(base.clone())
        .unwrap();
        assert_eq!((p.crop, p.resize), (192, 219));
        let p = PreprocessOverrides {
            crop_pct: Some(1.0),
            std: Some([0.5; 3]),
            ..Default::default()
        }
        .apply(base.clone())
        .unwrap();
        assert_eq!((p.crop, p.resize, p.std), (224, 224, [0.5; 3]));
        for bad in [
            PreprocessOverrides {
                crop_pct: Some(1.5),
                ..Default::default()
            },
            PreprocessOverrides {
                size: Some(0),
                ..Default::default()
            },
            PreprocessOverrides {
                std: Some([0.5, 0.0, 0.5]),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(base.clone()).is_err(), "{bad:?}");
        }
        assert!(PreprocessOverrides::default().is_empty());
        assert_eq!(
            PreprocessOverrides::default().apply(base.clone()).unwrap(),
            base
        );
    }
}
