//! Micro-benchmark of the depthwise kernel on the models' shapes, one thread: prints µs and
//! GMAC/s per shape, asserts nothing.
//!
//! `cargo bench -p effnet-cpu --bench depthwise` (`EFFNET_CPU_SIMD=scalar|avx2` for the other
//! paths).

use std::time::Instant;

use effnet_cpu::Isa;
use effnet_cpu::kernels::{self, Act};
use effnet_cpu::plan::Pad;

/// (height = width, channels, kernel, stride) of the depthwise convs of V2-S and Lite0.
const SHAPES: [(usize, usize, usize, usize); 16] = [
    (112, 32, 3, 1),
    (112, 96, 3, 2),
    (56, 144, 3, 1),
    (56, 144, 5, 2),
    (28, 240, 5, 1),
    (28, 240, 3, 2),
    (14, 480, 3, 1),
    (14, 672, 5, 1),
    (14, 672, 5, 2),
    (7, 1152, 5, 1),
    (7, 1536, 3, 1),
    (14, 960, 3, 2),
    (28, 256, 3, 2),
    (14, 512, 3, 1),
    (14, 768, 3, 1),
    (14, 960, 3, 1),
];

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: nothing to check, so no work.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "depthwise: a micro-benchmark; run it with `cargo bench -p effnet-cpu --bench depthwise`"
        );
        return;
    }
    let isa = Isa::detect();
    println!("depthwise, 1 thread, {}", isa.name());
    for (h, c, k, s) in SHAPES {
        let g = Pad::Same.geometry(h, h, c, k, s);
        let input = vec![0.5f32; h * h * c];
        let w = vec![0.01f32; k * k * c];
        let bias = vec![0.1f32; c];
        let mut out = vec![0f32; g.oh * g.ow * c];
        let macs = g.oh * g.ow * c * k * k;
        let reps = (1e9 / macs as f64) as usize + 1;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                kernels::depthwise(isa, &input, &w, &bias, Act::Relu6, g, 0, &mut out, None);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        let gm = macs as f64 / best / 1e9;
        println!(
            "dw h{h} c{c} k{k} s{s}: {:.1} us {gm:.1} GMAC/s",
            best * 1e6
        );
    }
}
