//! The int8 kernels on every instruction set this CPU has against naive references.

use super::*;
use crate::plan::Pad;

/// The int8 kernels to test: the best, AVX2's and the scalar one (deduplicated).
fn kernels() -> Vec<Int8Kernel> {
    let mut ks = vec![Int8Kernel::for_isa(Isa::best()), Int8Kernel::Scalar];
    if let Some(isa) = Isa::avx2() {
        ks.push(Int8Kernel::for_isa(isa));
    }
    ks.dedup();
    ks.sort_by_key(|k| k.name());
    ks.dedup();
    ks
}

fn isas() -> Vec<Isa> {
    [Some(Isa::best()), Isa::avx2(), Some(Isa::scalar())]
        .into_iter()
        .flatten()
        .collect()
}

/// Deterministic pseudo-random bytes.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

fn weights(n: usize, seed: u64) -> Vec<i8> {
    bytes(n, seed)
        .into_iter()
        .map(|b| (b as i8).max(-127))
        .collect()
}

/// The epilogue of a layer with these made-up parameters.
fn requant(n: usize, act: Act, k: usize) -> Requant {
    let w_scale: Vec<f32> = (0..n).map(|c| 0.002 + 0.0001 * (c % 7) as f32).collect();
    let bias: Vec<i32> = (0..n).map(|c| (c as i32 * 37 % 201) - 100).collect();
    let colsum = vec![0; n];
    // Output range about what an `k`-deep sum of these values spans.
    let out_scale = 0.02 * (k as f32).sqrt();
    Requant::new(0.03, 0, &w_scale, &colsum, &bias, act, out_scale, 20)
}

#[test]
fn gemm_matches_naive_for_odd_shapes_epilogues_residuals_and_threads() {
    for kernel in kernels() {
        for (m, k, n, lda) in [
            (1usize, 1usize, 1usize, 4usize),
            (13, 7, 5, 9),
            (29, 96, 40, 96),
            (150, 27, 33, 28),
            (7, 600, 70, 611),
            (300, 64, 24, 64),
            (37, 70, 80, 72),
            (20, 30, 48, 32),
            (25, 1152, 17, 1152),
        ] {
            let lhs = bytes((m - 1) * lda + k.next_multiple_of(4), 1);
            let w = weights(k * n, 2);
            let packed = PackedI8::new(kernel, &w, k, n);
            let naive: Vec<i32> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    (0..k)
                        .map(|t| lhs[i * lda + t] as i32 * w[t * n + j] as i32)
                        .sum()
                })
                .collect();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let what = format!("{} m{m} k{k} n{n} t{threads}", kernel.name());
                let mut raw = vec![0i32; m * n];
                pool.install(|| gemm(&lhs, lda, m, &packed, GemmOut::I32(&mut raw), threads));
                assert_eq!(raw, naive, "{what} int32");
                let res = bytes(m * n, 3);
                for (act, with_res) in [
                    (Act::Relu6, false),
                    (Act::None, true),
                    (Act::Silu, false),
                    (Act::Relu, false),
                ] {
                    let (req, rmul) = if with_res {
                        let (r, m) = requant(n, act, k).with_residual(0.05, 130, 0.04);
                        (r, Some(m))
                    } else {
                        (requant(n, act, k), None)
                    };
                    let residual = rmul.map(|mul| Residual { x: &res, mul });
                    let mut out = vec![0u8; m * n];
                    let go = GemmOut::U8 {
                        dst: &mut out,
                        req: &req,
                        residual,
                    };
                    pool.install(|| gemm(&lhs, lda, m, &packed, go, threads));
                    let mut off = 0;
                    for (ij, (&got, &acc)) in out.iter().zip(&naive).enumerate() {
                        let j = ij % n;
                        let r = rmul.map(|mul| (res[ij], mul));
                        let want = requant_one(acc, req.mul[j], req.add[j], req.out, r);
                        let d = (got as i32 - want as i32).abs();
                        assert!(
                            d <= 1,
                            "{what} {act:?} res {with_res} at {ij}: {got} vs {want}"
                        );
                        off += d as usize;
                    }
                    // FMA vs separate multiply and add rounds a rare tie the other way.
                    assert!(
                        off * 100 <= out.len().max(100),
                        "{what} {act:?}: {off} off by one"
                    );
                }
            }
        }
    }
}

#[test]
fn requant_clamps_to_activation_bounds_and_rounds_ties_to_even() {
    // Output zero point 100 (u8), 0.1 per step: ReLU6 keeps 100..=160.
    let req = Requant::new(0.05, 0, &[1.0], &[0], &[0], Act::Relu6, 0.1, 100);
    let OutKind::Clamp { lo, hi } = req.out else {
        panic!("ReLU6 clamps")
    };
    assert!((lo, hi) == (100.0, 160.0) && req.mul[0] == 0.5);
    let q = |acc| requant_one(acc, req.mul[0], req.add[0], req.out, None);
    assert_eq!((q(-50), q(1000)), (100, 160));
    // Half a step per unit: 100.5 and 101.5 round to the even neighbour.
    assert_eq!((q(1), q(3)), (100, 102));
    assert_eq!(round_u8(3.5), 4);
    assert_eq!(round_u8(254.5), 254);
}

#[test]
fn depthwise_matches_naive_with_zero_point_padding() {
    for (k, stride, c, pad, h, w, act) in [
        (3, 1, 40, Pad::Same, 9, 10, Act::Relu6),
        (5, 2, 72, Pad::Same, 11, 13, Act::Silu),
        (
            3,
            2,
            16,
            Pad::Explicit {
                top: 1,
                left: 1,
                bottom: 1,
                right: 1,
            },
            8,
            8,
            Act::None,
        ),
        (5, 1, 33, Pad::Same, 6, 7, Act::Relu),
        (3, 1, 64, Pad::Same, 5, 19, Act::Relu6),
        (7, 2, 20, Pad::Same, 9, 9, Act::Silu),
    ] {
        let g = pad.geometry(h, w, c, k, stride);
        let input = bytes(h * w * c, 7);
        let wt = weights(k * k * c, 8);
        let zp = 131u8;
        let req = requant(c, act, k * k);
        let mut want = vec![0u8; g.oh * g.ow * c];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                for ch in 0..c {
                    let mut acc = 0i32;
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * stride + ky) as isize - g.pad_top as isize;
                            let ix = (ox * stride + kx) as isize - g.pad_left as isize;
                            let inside = iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                            let x = if inside {
                                input[(iy as usize * w + ix as usize) * c + ch]
                            } else {
                                zp
                            };
                            acc += x as i32 * wt[(ky * k + kx) * c + ch] as i32;
                        }
                    }
                    want[(oy * g.ow + ox) * c + ch] =
                        requant_one(acc, req.mul[ch], req.add[ch], req.out, None);
                }
            }
        }
        for isa in isas() {
            let mut out = vec![0u8; want.len()];
            let mut sums = vec![0i32; c];
            let dww = DwWeights::new(Int8Kernel::for_isa(isa), &wt, k, c);
            // Two row tiles, as the executor splits the image.
            let half = g.oh / 2 * g.ow * c;
            let (top, bottom) = out.split_at_mut(half);
            depthwise(isa, &dww, &input, &req, g, 0, zp, top, Some(&mut sums));
            depthwise(
                isa,
                &dww,
                &input,
                &req,
                g,
                g.oh / 2,
                zp,
                bottom,
                Some(&mut sums),
            );
            let what = format!("{} k{k} s{stride} c{c} {act:?}", isa.name());
            let mut plain = vec![0u8; want.len()];
            depthwise_u8(isa, &input, &wt, &req, g, 0, zp, &mut plain, None);
            for (i, (a, b)) in plain.iter().zip(&want).enumerate() {
                assert!(
                    (*a as i32 - *b as i32).abs() <= 1,
                    "{what} plain at {i}: {a} vs {b}"
                );
            }
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (*a as i32 - *b as i32).abs() <= 1,
                    "{what} at {i}: {a} vs {b}"
                );
            }
            for (ch, s) in sums.iter().enumerate() {
                let total: i32 = out.iter().skip(ch).step_by(c).map(|v| *v as i32).sum();
                assert_eq!(*s, total, "{what}");
            }
        }
    }
}

#[test]
fn im2col_pads_with_the_zero_point_and_quantize_rounds_ties_to_even() {
    let none = Pad::Explicit {
        top: 0,
        left: 0,
        bottom: 0,
        right: 0,
    };
    let g = none.geometry(3, 3, 2, 3, 2);
    let input: Vec<u8> = (1..=18).collect();
    let ldc = 20;
    let mut col = vec![0u8; g.oh * g.ow * ldc];
    let same = Pad::Same.geometry(3, 3, 2, 3, 2);
    let mut col_same = vec![0u8; same.oh * same.ow * ldc];
    for isa in isas() {
        im2col_u8(isa, &input, g, 0, g.oh, 9, ldc, &mut col);
        let all: Vec<u8> = (1..=18).chain([9, 9]).collect();
        assert_eq!(col, all);
        // SAME pads one row and column before: output (0, 0) starts with 4 pad pixels.
        im2col_u8(isa, &input, same, 0, same.oh, 9, ldc, &mut col_same);
        assert_eq!(&col_same[..8], &[9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(&col_same[8..12], &[1, 2, 3, 4]);
        // scale 0.5, zero point 128: saturation and two ties.
        let img = [-100.0, 0.0, 0.5, 100.0, -0.25, 0.75];
        let mut q = vec![0u8; 6];
        quantize_image(isa, &img, false, 2.0, 128.0, &mut q);
        assert_eq!(q, vec![0, 128, 129, 255, 128, 130]);
    }
}

#[test]
fn gate_scaling_and_column_sums() {
    let px: Vec<u8> = vec![10, 200, 30, 40];
    for isa in isas() {
        let mut p = px.clone();
        scale_channels_u8(isa, &mut p, &[0.5, 2.0], &[1.0, -100.0]);
        assert_eq!(p, vec![6, 255, 16, 0]);
        let mut s = vec![0i32; 2];
        column_sums_u8(isa, &px, &mut s);
        assert_eq!(s, vec![40, 240]);
    }
}
