//! Micro-benchmark of the int8 kernels beside the f32 ones on the models' shapes, one thread:
//! the GEMM (1×1 convs, requantising epilogue) and the depthwise conv. Prints µs per shape for
//! both and the ratio f32 / int8; asserts nothing.
//!
//! `cargo bench -p effnet-cpu --bench int8` (`EFFNET_CPU_SIMD=scalar|avx2` for the other
//! paths).

use std::time::Instant;

use effnet_cpu::Isa;
use effnet_cpu::kernels::gemm::{Epilogue, Packed, gemm_packed};
use effnet_cpu::kernels::int8::{self, DwWeights, GemmOut, Int8Kernel, PackedI8, Requant};
use effnet_cpu::kernels::{self, Act};
use effnet_cpu::plan::Pad;

/// (pixels, input channels, output channels, activation) of 1×1 convs of V2-S and Lite0.
const GEMMS: [(usize, usize, usize, Act); 10] = [
    (12544, 16, 96, Act::Relu6),
    (3136, 24, 144, Act::Relu6),
    (784, 40, 240, Act::Relu6),
    (196, 80, 480, Act::Relu6),
    (3136, 144, 24, Act::None),
    (784, 240, 40, Act::None),
    (196, 960, 160, Act::None),
    (3136, 216, 48, Act::Silu),
    (784, 384, 64, Act::Silu),
    (49, 1536, 256, Act::None),
];

/// (height = width, channels, kernel, stride) of depthwise convs of V2-S and Lite0.
const DWS: [(usize, usize, usize, usize); 8] = [
    (112, 32, 3, 1),
    (112, 96, 3, 2),
    (56, 144, 3, 1),
    (28, 240, 5, 1),
    (14, 480, 3, 1),
    (14, 672, 5, 1),
    (7, 1152, 5, 1),
    (14, 960, 3, 1),
];

/// Best seconds per call of `f` over 5 rounds of about 0.2 s.
fn time(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let reps = (0.2 / t.elapsed().as_secs_f64().max(1e-7)) as usize + 1;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("int8: a micro-benchmark; run it with `cargo bench -p effnet-cpu --bench int8`");
        return;
    }
    let isa = Isa::detect();
    let kernel = Int8Kernel::for_isa(isa);
    println!("1 thread; f32 {} vs int8 {}", isa.name(), kernel.name());
    println!(
        "{:<28} {:>10} {:>10} {:>7}",
        "gemm m k n act", "f32 us", "int8 us", "ratio"
    );
    for (m, k, n, act) in GEMMS {
        let lhs = vec![0.5f32; m * k];
        let w = vec![0.01f32; k * n];
        let bias = vec![0.1f32; n];
        let mut out = vec![0f32; m * n];
        let f32_time = match Packed::new(isa, &w, &bias, k, n) {
            Some(p) => time(|| {
                let epi = Epilogue {
                    act,
                    residual: None,
                };
                gemm_packed(isa, &mut out, &lhs, k, m, p.view(), epi, 1)
            }),
            None => f64::NAN,
        };
        let lhs8 = vec![130u8; m * k];
        let w8 = vec![3i8; k * n];
        let packed = PackedI8::new(kernel, &w8, k, n);
        let req = Requant::new(
            0.02,
            128,
            &vec![0.01; n],
            &vec![0; n],
            &vec![0; n],
            act,
            0.05,
            0,
        );
        let mut out8 = vec![0u8; m * n];
        let int8_time = time(|| {
            let go = GemmOut::U8 {
                dst: &mut out8,
                req: &req,
                residual: None,
            };
            int8::gemm(&lhs8, k, m, &packed, go, 1)
        });
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>6.2}x",
            format!("{m} {k} {n} {act:?}"),
            f32_time * 1e6,
            int8_time * 1e6,
            f32_time / int8_time
        );
    }
    println!(
        "{:<28} {:>10} {:>10} {:>7}",
        "depthwise h c k s", "f32 us", "int8 us", "ratio"
    );
    for (h, c, k, s) in DWS {
        let g = Pad::Same.geometry(h, h, c, k, s);
        let input = vec![0.5f32; h * h * c];
        let w = vec![0.01f32; k * k * c];
        let bias = vec![0.1f32; c];
        let mut out = vec![0f32; g.oh * g.ow * c];
        let f32_time =
            time(|| kernels::depthwise(isa, &input, &w, &bias, Act::Relu6, g, 0, &mut out, None));
        let input8 = vec![130u8; h * h * c];
        let w8 = DwWeights::new(kernel, &vec![3i8; k * k * c], k, c);
        let req = Requant::new(
            0.02,
            128,
            &vec![0.01; c],
            &vec![0; c],
            &vec![0; c],
            Act::Relu6,
            0.05,
            0,
        );
        let mut out8 = vec![0u8; g.oh * g.ow * c];
        let int8_time =
            time(|| int8::depthwise(isa, &w8, &input8, &req, g, 0, 128, &mut out8, None));
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>6.2}x",
            format!("{h} {c} {k} {s}"),
            f32_time * 1e6,
            int8_time * 1e6,
            f32_time / int8_time
        );
    }
}
