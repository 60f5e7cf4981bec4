//! ImageFolder scanning and the parallel loader, on small trees written into a temp dir by each test:
//! class order, error messages, formats / colour types, corrupt files, determinism across thread counts.

use std::path::{Path, PathBuf};

use effnet_data::dataset::{ImageNetFolders, load_classes};
use effnet_data::loader::{epoch_order, train_batches};
use effnet_data::{
    DataError, ImageFolder, Interpolation, LoaderConfig, Preprocess, RandAugment, TrainTransform,
    eval_batches,
};
use image::{DynamicImage, ImageFormat, RgbImage};

/// A fresh, empty temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "effnet-data-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 40x30 image whose colours depend on `seed`, so samples differ.
fn pattern(seed: u32) -> RgbImage {
    RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([
            (x * 6 + seed * 37) as u8,
            (y * 8 + seed * 11) as u8,
            ((x + y) * 3 + seed) as u8,
        ])
    })
}

fn write(img: DynamicImage, path: &Path, fmt: ImageFormat) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    img.save_with_format(path, fmt).expect("save image");
}

/// Builds `root/<class>/` with `n` valid JPEG/PNG images per class.
fn make_tree(root: &Path, classes: &[&str], n: u32) {
    for (ci, c) in classes.iter().enumerate() {
        for i in 0..n {
            let img = DynamicImage::ImageRgb8(pattern(ci as u32 * 100 + i));
            let (ext, fmt) = if i % 2 == 0 {
                ("jpg", ImageFormat::Jpeg)
            } else {
                ("png", ImageFormat::Png)
            };
            write(img, &root.join(c).join(format!("img{i:03}.{ext}")), fmt);
        }
    }
}

fn small_tf() -> TrainTransform {
    let mut tf = TrainTransform::imagenet(
        24,
        Some(RandAugment::parse_timm("rand-m9-mstd0.5").unwrap()),
    );
    tf.interpolation = Interpolation::Bilinear;
    tf
}

fn cfg(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        workers,
        shuffle: true,
        seed: 7,
        drop_last: false,
        prefetch: 2,
    }
}

#[test]
fn classes_sorted_like_imagefolder_and_counted() {
    let t = TempDir::new("classes");
    make_tree(&t.0, &["zebra", "Apple", "mango", "banana"], 3);
    std::fs::create_dir_all(t.0.join("empty_class")).unwrap();
    std::fs::write(t.0.join("zebra").join("notes.txt"), "not an image").unwrap();
    let ds = ImageFolder::scan(&t.0).expect("scan");
    // Byte order, as Python's sorted(): uppercase before lowercase.
    assert_eq!(
        ds.classes,
        ["Apple", "banana", "empty_class", "mango", "zebra"]
    );
    let counts = ds.class_counts();
    assert_eq!(counts[0], ("Apple".to_string(), 3));
    assert_eq!(counts[2], ("empty_class".to_string(), 0));
    assert_eq!(ds.len(), 12, "the .txt file is not a sample");
    assert!(
        ds.report().contains("1 empty: empty_class"),
        "{}",
        ds.report()
    );
    // Labels follow the class list; files within a class are sorted.
    let zebra: Vec<_> = ds.samples.iter().filter(|(_, l)| *l == 4).collect();
    assert!(zebra[0].0.ends_with("zebra/img000.jpg"));
    // Class list round trip.
    let list = t.0.join("classes.txt");
    ds.save_classes(&list).unwrap();
    assert_eq!(load_classes(&list).unwrap(), ds.classes);
}

#[test]
fn refuses_missing_empty_and_one_class_trees_naming_the_folder() {
    let t = TempDir::new("refuse");
    let missing = t.0.join("nope");
    let e = ImageFolder::scan(&missing).unwrap_err();
    assert!(matches!(e, DataError::Dataset { .. }));
    assert!(e.to_string().contains("nope"), "{e}");

    let one = t.0.join("one");
    make_tree(&one, &["only"], 2);
    let e = ImageFolder::scan(&one).unwrap_err().to_string();
    assert!(e.contains("one") && e.contains("at least 2"), "{e}");

    let empty = t.0.join("empty");
    std::fs::create_dir_all(empty.join("a")).unwrap();
    std::fs::create_dir_all(empty.join("b")).unwrap();
    let e = ImageFolder::scan(&empty).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no images"), "{e}");

    // Two class folders, but only one holds images.
    let lopsided = t.0.join("lopsided");
    make_tree(&lopsided, &["a"], 2);
    std::fs::create_dir_all(lopsided.join("b")).unwrap();
    let e = ImageFolder::scan(&lopsided).unwrap_err().to_string();
    assert!(e.contains("lopsided"), "{e}");
}

#[test]
fn imagenet_layout_val_uses_train_classes() {
    let t = TempDir::new("splits");
    make_tree(&t.0.join("training"), &["a", "b", "c"], 2);
    make_tree(&t.0.join("validation"), &["a", "c"], 1);
    let f = ImageNetFolders::open(&t.0, "training", "validation").expect("open");
    let val = f.val.expect("val split");
    assert_eq!(val.classes, ["a", "b", "c"]);
    let labels: Vec<usize> = val.samples.iter().map(|(_, l)| *l).collect();
    assert_eq!(
        labels,
        [0, 2],
        "c keeps label 2 although b is missing in val"
    );
    // A val class unknown to train is refused.
    make_tree(&t.0.join("validation"), &["d"], 1);
    let e = ImageNetFolders::open(&t.0, "training", "validation")
        .unwrap_err()
        .to_string();
    assert!(e.contains("validation") && e.contains('d'), "{e}");
}

#[test]
fn formats_and_colour_types_load_as_rgb() {
    let t = TempDir::new("formats");
    let rgb = pattern(3);
    let dir_a = t.0.join("a");
    let dir_b = t.0.join("b");
    write(
        DynamicImage::ImageRgb8(rgb.clone()),
        &dir_a.join("x.bmp"),
        ImageFormat::Bmp,
    );
    write(
        DynamicImage::ImageRgb8(rgb.clone()),
        &dir_a.join("x.webp"),
        ImageFormat::WebP,
    );
    let gray = DynamicImage::ImageRgb8(rgb.clone()).into_luma8();
    write(
        DynamicImage::ImageLuma8(gray),
        &dir_a.join("gray.png"),
        ImageFormat::Png,
    );
    let rgba = DynamicImage::ImageRgb8(rgb.clone()).into_rgba8();
    write(
        DynamicImage::ImageRgba8(rgba),
        &dir_b.join("alpha.png"),
        ImageFormat::Png,
    );
    let gray_jpg = DynamicImage::ImageRgb8(rgb).into_luma8();
    write(
        DynamicImage::ImageLuma8(gray_jpg),
        &dir_b.join("gray.jpg"),
        ImageFormat::Jpeg,
    );
    let ds = ImageFolder::scan(&t.0).expect("scan");
    assert_eq!(ds.len(), 5);
    let pre = Preprocess::imagenet(16, 0.875, Interpolation::Bicubic);
    let batches: Vec<_> = eval_batches(&ds, &pre, 8, 2).collect();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].skipped.is_empty(), "{:?}", batches[0].skipped);
    assert_eq!(batches[0].labels.len(), 5);
    assert_eq!(batches[0].images.len(), 5 * 3 * 16 * 16);
}

#[test]
fn corrupt_files_are_skipped_reported_and_never_stop_the_epoch() {
    let t = TempDir::new("corrupt");
    make_tree(&t.0, &["cat", "dog"], 5);
    // Zero bytes, a text file with an image name, and a truncated JPEG.
    std::fs::write(t.0.join("cat").join("zero.jpg"), b"").unwrap();
    std::fs::write(
        t.0.join("dog").join("text.png"),
        b"definitely not a PNG file",
    )
    .unwrap();
    let good = std::fs::read(t.0.join("dog").join("img000.jpg")).unwrap();
    std::fs::write(t.0.join("dog").join("trunc.jpg"), &good[..good.len() / 3]).unwrap();
    let mut ds = ImageFolder::scan(&t.0).expect("scan");
    // The scan already sets the three aside; put them back to exercise the loader's own skipping
    // (a file can also go bad between the scan and its epoch).
    assert_eq!((ds.len(), ds.unreadable_count()), (10, 3));
    let bad: Vec<(PathBuf, usize)> = ds.unreadable.iter().map(|(p, _)| (p.clone(), 0)).collect();
    ds.samples.extend(bad);
    assert_eq!(ds.len(), 13);

    let mut c = cfg(2);
    c.shuffle = false;
    let mut it = train_batches(&ds, &small_tf(), &c, 0);
    assert_eq!(it.num_batches(), 4);
    let batches: Vec<_> = it.by_ref().collect();
    assert_eq!(
        it.skipped_so_far(),
        batches.iter().map(|b| b.skipped.len()).sum::<usize>()
    );
    let seen: usize = batches.iter().map(|b| b.len()).sum();
    let skipped: Vec<&PathBuf> = batches
        .iter()
        .flat_map(|b| b.skipped.iter().map(|(p, _)| p))
        .collect();
    assert_eq!(batches.len(), 4, "13 samples in batches of 4");
    let names: Vec<String> = skipped
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // The truncated JPEG is caught (no padding with grey), as are the empty and text files.
    assert!(names.contains(&"trunc.jpg".to_string()), "{names:?}");
    assert!(names.contains(&"zero.jpg".to_string()), "{names:?}");
    assert!(names.contains(&"text.png".to_string()), "{names:?}");
    assert_eq!(seen + skipped.len(), 13);
    for b in &batches {
        assert_eq!(
            b.images.len(),
            b.len() * 3 * 24 * 24,
            "smaller batch, consistent buffer"
        );
        for (_, why) in &b.skipped {
            assert!(!why.is_empty());
        }
    }
    // Eval reports them too.
    let pre = Preprocess::imagenet(16, 0.875, Interpolation::Bilinear);
    let skipped_eval: usize = eval_batches(&ds, &pre, 5, 1).map(|b| b.skipped.len()).sum();
    assert_eq!(skipped_eval, skipped.len());
}

#[test]
fn batches_are_identical_for_any_worker_count() {
    let t = TempDir::new("determinism");
    make_tree(&t.0, &["a", "b", "c"], 5);
    let ds = ImageFolder::scan(&t.0).expect("scan");
    let tf = small_tf();
    let run =
        |w: usize, epoch: u64| -> Vec<_> { train_batches(&ds, &tf, &cfg(w), epoch).collect() };
    let one = run(1, 3);
    let three = run(3, 3);
    let four = run(4, 3);
    assert_eq!(one.len(), 4);
    assert_eq!(one, three);
    assert_eq!(one, four);
    // A different epoch reshuffles and re-augments.
    let other = run(2, 4);
    assert_ne!(one, other);
    // Every sample appears exactly once per epoch.
    let mut labels: Vec<usize> = one.iter().flat_map(|b| b.labels.clone()).collect();
    labels.sort();
    assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
}

#[test]
fn size_and_magnitude_change_per_epoch_and_drop_last_holds() {
    let t = TempDir::new("stages");
    make_tree(&t.0, &["a", "b"], 5);
    let ds = ImageFolder::scan(&t.0).expect("scan");
    let base = small_tf();
    let mut c = cfg(2);
    c.drop_last = true;
    let small: Vec<_> = train_batches(&ds, &base.at_stage(16, Some(5.0)), &c, 0).collect();
    let big: Vec<_> = train_batches(&ds, &base.at_stage(32, Some(15.0)), &c, 1).collect();
    assert_eq!(
        small.len(),
        2,
        "10 samples, batch 4, last partial batch dropped"
    );
    assert!(
        small
            .iter()
            .all(|b| b.size == 16 && b.images.len() == 4 * 3 * 16 * 16)
    );
    assert!(
        big.iter()
            .all(|b| b.size == 32 && b.images.len() == 4 * 3 * 32 * 32)
    );
    assert_eq!(
        base.at_stage(16, Some(5.0)).randaugment.unwrap().magnitude,
        5.0
    );
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(100, true, 1, 0);
    let b = epoch_order(100, true, 1, 0);
    let c = epoch_order(100, true, 1, 1);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut s = a.clone();
    s.sort();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
    assert_eq!(epoch_order(5, false, 1, 9), [0, 1, 2, 3, 4]);
}

#[test]
fn eval_batches_keep_dataset_order_and_match_preprocess() {
    let t = TempDir::new("eval");
    make_tree(&t.0, &["a", "b"], 3);
    let ds = ImageFolder::scan(&t.0).expect("scan");
    let pre = Preprocess::imagenet(16, 0.875, Interpolation::Bicubic);
    let batches: Vec<_> = eval_batches(&ds, &pre, 4, 2).collect();
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), [4, 2]);
    let labels: Vec<usize> = batches.iter().flat_map(|b| b.labels.clone()).collect();
    assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
    let img = effnet_data::load_rgb(&ds.samples[5].0).unwrap();
    let want = pre.apply(&img);
    let per = 3 * 16 * 16;
    assert_eq!(&batches[1].images[per..2 * per], &want[..]);
}
