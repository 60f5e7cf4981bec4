//! Micro-benchmark of the packed GEMM on the models' 1×1 shapes, one thread: prints µs and
//! GFLOP/s per shape, asserts nothing.
//!
//! `cargo bench -p effnet-cpu --bench gemm` (`EFFNET_CPU_SIMD=avx2` for the AVX2 kernel on an
//! AVX-512 CPU).

use std::time::Instant;

use effnet_cpu::Isa;
use effnet_cpu::kernels::Act;
use effnet_cpu::kernels::gemm::{Epilogue, Packed, gemm_packed};

/// (pixels, input channels, output channels, activation) of the 1×1 convs of V2-B0/S and Lite0.
const SHAPES: [(usize, usize, usize, Act); 14] = [
    (1024, 16, 96, Act::Relu6),
    (1024, 24, 144, Act::Relu6),
    (784, 40, 240, Act::Relu6),
    (196, 80, 480, Act::Relu6),
    (1024, 32, 16, Act::None),
    (1024, 96, 24, Act::None),
    (1024, 144, 24, Act::None),
    (784, 144, 40, Act::None),
    (196, 480, 80, Act::None),
    (1024, 216, 24, Act::Silu),
    (1024, 432, 192, Act::Silu),
    (196, 960, 160, Act::None),
    (49, 1536, 256, Act::None),
    (196, 576, 256, Act::Silu),
];

fn main() {
    // `cargo test --benches` runs this binary without `--bench`: nothing to check, so no work.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gemm: a micro-benchmark; run it with `cargo bench -p effnet-cpu --bench gemm`");
        return;
    }
    let isa = Isa::detect();
    println!("packed GEMM, 1 thread, {}", isa.name());
    for (m, k, n, act) in SHAPES {
        let lhs = vec![0.5f32; m * k];
        let w = vec![0.01f32; k * n];
        let bias = vec![0.1f32; n];
        let Some(p) = Packed::new(isa, &w, &bias, k, n) else {
            println!("{} has no packed GEMM microkernel", isa.name());
            return;
        };
        let mut out = vec![0f32; m * n];
        let epi = Epilogue {
            act,
            residual: None,
        };
        let reps = (2e9 / (2 * m * k * n) as f64) as usize + 1;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                gemm_packed(isa, &mut out, &lhs, k, m, p.view(), epi, 1);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        let gf = 2.0 * (m * k * n) as f64 / best / 1e9;
        println!(
            "m{m} k{k} n{n} {act:?}: {:.1} us {gf:.1} GFLOP/s",
            best * 1e6
        );
    }
}
