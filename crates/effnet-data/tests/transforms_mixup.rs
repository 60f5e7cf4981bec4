//! RandomResizedCrop box statistics, flip, RandAugment sampling rules, and mixup / CutMix targets.

use effnet_data::loader::batch_rng;
use effnet_data::mixup::{mix_targets, sample_beta};
use effnet_data::randaugment::{RaOp, RandAugment};
use effnet_data::transforms::{hflip, random_resized_crop_box};
use effnet_data::{Mixup, TrainTransform, smooth_one_hot, soft_target_cross_entropy};
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn random_resized_crop_boxes_follow_scale_and_ratio() {
    let mut rng = StdRng::seed_from_u64(42);
    let (w, h) = (500u32, 375u32);
    let n = 20000;
    let (mut area_sum, mut log_ratio_sum, mut fallbacks) = (0.0, 0.0, 0);
    let mut left_max = 0;
    for _ in 0..n {
        let b = random_resized_crop_box(w, h, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
        assert!(b.width >= 1 && b.height >= 1);
        assert!(
            b.left + b.width <= w && b.top + b.height <= h,
            "{b:?} outside"
        );
        let frac = (b.width * b.height) as f64 / (w * h) as f64;
        let ratio = b.width as f64 / b.height as f64;
        if b.width == w && b.height == h {
            fallbacks += 1;
            continue;
        }
        // Rounding of w and h can move area and ratio slightly past the limits.
        assert!(frac > 0.075 && frac < 1.0 + 1e-9, "area fraction {frac}");
        assert!(ratio > 0.74 && ratio < 1.345, "ratio {ratio}");
        area_sum += frac;
        log_ratio_sum += ratio.ln();
        left_max = left_max.max(b.left);
    }
    let kept = (n - fallbacks) as f64;
    let mean_area = area_sum / kept;
    let mean_log_ratio = log_ratio_sum / kept;
    // torchvision's statistics for the same setting, recorded by scripts/make_data_fixtures.py.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/augment/rrc_stats.txt");
    let text = std::fs::read_to_string(path).expect("rrc_stats.txt fixture");
    let line = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("stats line");
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    // Standard error of the mean area is ~0.002 at 20k draws.
    assert!(
        (mean_area - v[0]).abs() < 0.01,
        "mean area {mean_area} vs torchvision {}",
        v[0]
    );
    assert!(
        (mean_log_ratio - v[1]).abs() < 0.01,
        "mean log ratio {mean_log_ratio} vs {}",
        v[1]
    );
    assert!(
        (fallbacks as f64 / n as f64 - v[2]).abs() < 0.005,
        "fallbacks {fallbacks}"
    );
    assert!(left_max > 300, "positions cover the image");
}

#[test]
fn random_resized_crop_falls_back_to_clamped_center_crop() {
    // No box with ratio in [3, 4] and >= 90% of the area fits a square: 10 tries fail.
    let mut rng = StdRng::seed_from_u64(0);
    let b = random_resized_crop_box(100, 100, (0.9, 1.0), (3.0, 4.0), &mut rng);
    assert_eq!((b.top, b.left, b.height, b.width), (33, 0, 33, 100));
    // Inside the ratio range the fallback is the whole image.
    let b = random_resized_crop_box(100, 100, (1.5, 2.0), (0.5, 2.0), &mut rng);
    assert_eq!((b.top, b.left, b.height, b.width), (0, 0, 100, 100));
}

#[test]
fn hflip_mirrors_rows() {
    let img = RgbImage::from_fn(5, 2, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut f = img.clone();
    hflip(&mut f);
    for y in 0..2 {
        for x in 0..5 {
            assert_eq!(f.get_pixel(x, y), img.get_pixel(4 - x, y));
        }
    }
}

#[test]
fn train_transform_is_a_function_of_the_rng() {
    let img = RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, (x + y) as u8])
    });
    let tf = TrainTransform::imagenet(32, Some(RandAugment::automl(2, 15.0)));
    let mut a = vec![0f32; 3 * 32 * 32];
    let mut b = vec![0f32; 3 * 32 * 32];
    tf.apply_into(&img, &mut StdRng::seed_from_u64(5), &mut a);
    tf.apply_into(&img, &mut StdRng::seed_from_u64(5), &mut b);
    assert_eq!(a, b);
    tf.apply_into(&img, &mut StdRng::seed_from_u64(6), &mut b);
    assert_ne!(a, b);
    assert!(
        a.iter().all(|v| v.is_finite() && v.abs() < 3.0),
        "normalised range"
    );
}

fn stripes() -> RgbImage {
    RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 100])
    })
}

#[test]
fn timm_ops_fire_with_probability_half_automl_always() {
    let img = stripes();
    let mut inverted = img.clone();
    effnet_data::randaugment::ops::invert(&mut inverted);
    let mut timm = RandAugment::parse_timm("rand-m9-n1-mstd0.5").unwrap();
    timm.ops = vec![RaOp::Invert];
    let mut automl = RandAugment::automl(1, 9.0);
    automl.ops = vec![RaOp::Invert];
    let mut rng = StdRng::seed_from_u64(3);
    let n = 4000;
    let hits = (0..n)
        .filter(|_| timm.apply(img.clone(), &mut rng) == inverted)
        .count();
    let p = hits as f64 / n as f64;
    assert!(
        (p - 0.5).abs() < 0.03,
        "timm applies each op with p=0.5, got {p}"
    );
    assert!((0..200).all(|_| automl.apply(img.clone(), &mut rng) == inverted));
}

#[test]
fn automl_cutout_square_has_its_magnitude_size() {
    let ra = RandAugment::automl(2, 10.0);
    // Cutout at m=10: side 2*int(40) = 80, fill 128, centred where asked, clipped at the border.
    let mut img = RgbImage::from_pixel(224, 224, image::Rgb([0, 0, 0]));
    effnet_data::randaugment::ops::cutout(&mut img, 100, 100, 40, ra.fill);
    let filled = img.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    assert_eq!(filled, 80 * 80);
    let mut img = RgbImage::from_pixel(224, 224, image::Rgb([0, 0, 0]));
    effnet_data::randaugment::ops::cutout(&mut img, 10, 220, 40, ra.fill);
    assert_eq!(
        img.pixels().filter(|p| p.0 == [128, 128, 128]).count(),
        50 * 44
    );
    // Through apply_op the magnitude sets the size: m=5 gives a 40x40 square somewhere.
    let mut rng = StdRng::seed_from_u64(9);
    let out = ra.apply_op(
        RgbImage::from_pixel(224, 224, image::Rgb([0, 0, 0])),
        RaOp::Cutout,
        5.0,
        &mut rng,
    );
    let n = out.pixels().filter(|p| p.0 == [128, 128, 128]).count();
    assert!(n > 0 && n <= 40 * 40, "{n}");
}

#[test]
fn magnitude_changes_op_strength() {
    let img = stripes();
    let ra = RandAugment::automl(1, 0.0);
    let mut rng = StdRng::seed_from_u64(1);
    let diff = |a: &RgbImage, b: &RgbImage| -> u64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y) as u64)
            .sum()
    };
    let weak = ra.clone().with_magnitude(2.0);
    let strong = ra.with_magnitude(9.0);
    let w = weak.apply_op(img.clone(), RaOp::ShearX, 2.0, &mut rng);
    let s = strong.apply_op(img.clone(), RaOp::ShearX, 9.0, &mut rng);
    assert!(diff(&img, &s) > 2 * diff(&img, &w));
    // Posterize at m=10 keeps 4 bits; automl's Solarize at m=10 (threshold 256) is the identity.
    let p = strong.apply_op(img.clone(), RaOp::Posterize, 10.0, &mut rng);
    assert!(p.as_raw().iter().all(|v| v & 0x0f == 0));
    assert_eq!(
        strong.apply_op(img.clone(), RaOp::Solarize, 10.0, &mut rng),
        img
    );
    // Enhance ops at m=5 have factor 1.0: identity.
    assert_eq!(
        strong.apply_op(img.clone(), RaOp::Color, 5.0, &mut rng),
        img
    );
}

fn batch(b: usize, size: usize) -> Vec<f32> {
    (0..b * 3 * size * size)
        .map(|i| (i / (3 * size * size)) as f32)
        .collect()
}

#[test]
fn mixup_targets_sum_to_one_and_blend_with_the_flipped_batch() {
    let (b, size, c) = (6, 8, 5);
    let labels = vec![0, 1, 2, 3, 4, 0];
    let m = Mixup {
        mixup_alpha: 0.8,
        cutmix_alpha: 0.0,
        cutmix_minmax: None,
        prob: 1.0,
        switch_prob: 0.5,
        label_smoothing: 0.1,
        num_classes: c,
    };
    let mut imgs = batch(b, size);
    let (t, info) = m.apply_with_info(&mut imgs, &labels, size, &mut batch_rng(1, 0, 0));
    assert!(info.cutmix_box.is_none());
    let lam = info.lam as f32;
    assert!((0.0..=1.0).contains(&lam));
    for row in t.chunks(c) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let per = 3 * size * size;
    for i in 0..b {
        // Sample i holds value i, its partner b-1-i.
        let want = lam * i as f32 + (1.0 - lam) * (b - 1 - i) as f32;
        assert!((imgs[i * per + 7] - want).abs() < 1e-4);
        let want_t = lam * (0.9 + 0.02) + (1.0 - lam) * 0.02;
        if labels[i] != labels[b - 1 - i] {
            assert!((t[i * c + labels[i]] - want_t).abs() < 1e-5);
        }
    }
}

#[test]
fn cutmix_copies_a_box_from_the_partner_and_corrects_lambda() {
    let (b, size, c) = (4, 16, 3);
    let labels = vec![0, 1, 2, 1];
    let m = Mixup {
        mixup_alpha: 0.0,
        cutmix_alpha: 1.0,
        cutmix_minmax: None,
        prob: 1.0,
        switch_prob: 0.5,
        label_smoothing: 0.0,
        num_classes: c,
    };
    let mut seen_box = false;
    for seed in 0..20 {
        let mut imgs = batch(b, size);
        let (t, info) = m.apply_with_info(&mut imgs, &labels, size, &mut batch_rng(seed, 0, 0));
        let (y0, y1, x0, x1) = info.cutmix_box.expect("cutmix");
        let area = (y1 - y0) * (x1 - x0);
        seen_box |= area > 0;
        assert!((info.lam - (1.0 - area as f64 / (size * size) as f64)).abs() < 1e-12);
        let per = 3 * size * size;
        for i in 0..b {
            let from_partner = imgs[i * per..(i + 1) * per]
                .iter()
                .filter(|&&v| v == (b - 1 - i) as f32)
                .count();
            if i != b - 1 - i && labels[i] != labels[b - 1 - i] {
                assert_eq!(from_partner, 3 * area, "box pixels come from the partner");
            }
            let row = &t[i * c..(i + 1) * c];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            if labels[i] != labels[b - 1 - i] {
                assert!((row[labels[i]] - info.lam as f32).abs() < 1e-5);
            }
        }
    }
    assert!(seen_box);
}

#[test]
fn cutmix_minmax_box_sides_in_range() {
    let m = Mixup {
        mixup_alpha: 0.0,
        cutmix_alpha: 0.0,
        cutmix_minmax: Some((0.25, 0.5)),
        prob: 1.0,
        switch_prob: 0.5,
        label_smoothing: 0.0,
        num_classes: 2,
    };
    for seed in 0..50 {
        let mut imgs = batch(2, 32);
        let (_, info) = m.apply_with_info(&mut imgs, &[0, 1], 32, &mut batch_rng(seed, 1, 2));
        let (y0, y1, x0, x1) = info.cutmix_box.expect("minmax enables cutmix");
        assert!((8..16).contains(&(y1 - y0)) && (8..16).contains(&(x1 - x0)));
        assert!(y1 <= 32 && x1 <= 32);
    }
}

#[test]
fn switch_prob_and_prob_choose_the_mode() {
    let mut m = Mixup::new(0.8, 1.0, 10);
    let mut rng = StdRng::seed_from_u64(11);
    let labels = [1, 2];
    let n = 2000;
    let cut = (0..n)
        .filter(|_| {
            let mut imgs = batch(2, 4);
            m.apply_with_info(&mut imgs, &labels, 4, &mut rng)
                .1
                .cutmix_box
                .is_some()
        })
        .count();
    assert!((cut as f64 / n as f64 - 0.5).abs() < 0.05, "{cut}");
    m.prob = 0.0;
    let mut imgs = batch(2, 4);
    let orig = imgs.clone();
    let t = m.apply(&mut imgs, &labels, 4, &mut rng);
    assert_eq!(imgs, orig, "prob 0 leaves the batch alone");
    assert_eq!(t, smooth_one_hot(&labels, 10, 0.1));
}

#[test]
fn beta_sampler_has_the_right_mean_and_spread() {
    let mut rng = StdRng::seed_from_u64(5);
    for (a, b) in [(0.2, 0.2), (1.0, 1.0), (2.0, 5.0)] {
        let n = 40000;
        let xs: Vec<f64> = (0..n).map(|_| sample_beta(&mut rng, a, b)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let want_mean = a / (a + b);
        let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
        assert!((mean - want_mean).abs() < 0.01, "Beta({a},{b}) mean {mean}");
        assert!(
            (var - want_var).abs() < 0.1 * want_var,
            "Beta({a},{b}) var {var} vs {want_var}"
        );
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
    }
}

#[test]
fn smoothing_and_soft_cross_entropy() {
    let t = smooth_one_hot(&[2, 0], 4, 0.1);
    assert_eq!(t[2], 0.925);
    assert_eq!(t[0], 0.025);
    assert!((t[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    // With one-hot targets it is the ordinary cross-entropy -log softmax(z)[y].
    let logits = [1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0, 0.0, 0.0];
    let hard = smooth_one_hot(&[1, 1], 4, 0.0);
    let ce = soft_target_cross_entropy(&logits, &hard, 4);
    let lse = |z: &[f32]| z.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
    let want = ((lse(&logits[..4]) - 2.0) + (lse(&logits[4..]) - 3.0)) / 2.0;
    assert!((ce as f64 - want).abs() < 1e-5, "{ce} vs {want}");
    // Mixed targets give the same mix of the two losses.
    let mixed = mix_targets(&[0, 1], 4, 0.3, 0.0);
    let l0 = soft_target_cross_entropy(&logits[..4], &smooth_one_hot(&[0], 4, 0.0), 4);
    let l1 = soft_target_cross_entropy(&logits[..4], &smooth_one_hot(&[1], 4, 0.0), 4);
    let lm = soft_target_cross_entropy(&logits[..4], &mixed[..4], 4);
    assert!((lm - (0.3 * l0 + 0.7 * l1)).abs() < 1e-5);
    // Huge logits stay finite.
    let big = soft_target_cross_entropy(&[1000.0, -1000.0], &[0.5, 0.5], 2);
    assert!(big.is_finite() && (big - 1000.0).abs() < 1e-2);
}

#[test]
fn automl_specific_ops_follow_the_tf_formulas() {
    use effnet_data::randaugment::ops;
    // automl's Contrast blends towards pixel_count / 256 (clipped to 255), not the mean grey.
    let mut small = stripes(); // 32x32 -> 1024 / 256 = 4
    ops::contrast_automl(&mut small, 0.0);
    assert!(small.pixels().all(|p| p.0 == [4, 4, 4]));
    let mut big = RgbImage::from_pixel(224, 224, image::Rgb([10, 200, 30]));
    ops::contrast_automl(&mut big, 0.0);
    assert!(
        big.pixels().all(|p| p.0 == [196, 196, 196]),
        "50176 / 256 = 196"
    );
    // TF grey: (0.2989 R + 0.587 G + 0.114 B) / 255 * 255.5, truncated; Pillow's is L = 76 for red too,
    // but green differs: TF 149 (0.587 * 255.5), Pillow 150 ((38470 * 255 + 0x8000) >> 16).
    let mut red = RgbImage::from_pixel(2, 2, image::Rgb([255, 0, 0]));
    ops::color_tf(&mut red, 0.0);
    assert_eq!(red.get_pixel(0, 0).0, [76, 76, 76]);
    let mut green = RgbImage::from_pixel(2, 2, image::Rgb([0, 255, 0]));
    ops::color_tf(&mut green, 0.0);
    assert_eq!(green.get_pixel(0, 0).0, [149, 149, 149]);
    let mut green_pil = RgbImage::from_pixel(2, 2, image::Rgb([0, 255, 0]));
    ops::color(&mut green_pil, 0.0);
    assert_eq!(green_pil.get_pixel(0, 0).0, [150, 150, 150]);
    // Posterize to 0 bits (m < 2.5) is black rather than an error; SolarizeAdd past m=10 keeps adding.
    let mut p = stripes();
    ops::posterize(&mut p, 0);
    assert!(p.as_raw().iter().all(|&v| v == 0));
    let ra = RandAugment::automl(1, 15.0);
    let flat = RgbImage::from_pixel(4, 4, image::Rgb([10, 127, 128]));
    let out = ra.apply_op(flat, RaOp::SolarizeAdd, 15.0, &mut StdRng::seed_from_u64(0));
    assert_eq!(
        out.get_pixel(0, 0).0,
        [175, 255, 128],
        "adds int(1.5 * 110) = 165 below 128"
    );
}
