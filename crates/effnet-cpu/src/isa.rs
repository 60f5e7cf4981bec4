//! Runtime choice of the instruction set the kernels run with, and the macro that compiles one
//! kernel body once per instruction set.

/// Instruction set the executor's own kernels use. Constructed only by detection (or as the
/// portable fallback), so the SIMD variants are never used on a CPU that lacks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Isa(Level);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// Environment variable that forces the portable fallback (`EFFNET_CPU_SIMD=scalar`) or, on an
/// AVX-512 CPU, the AVX2 kernels (`EFFNET_CPU_SIMD=avx2`).
pub const SIMD_ENV: &str = "EFFNET_CPU_SIMD";

impl Isa {
    /// The best instruction set this CPU supports, unless `EFFNET_CPU_SIMD=scalar` asks for
    /// the portable fallback or `EFFNET_CPU_SIMD=avx2` for AVX2 (when the CPU has it).
    pub fn detect() -> Self {
        match std::env::var(SIMD_ENV) {
            Ok(v) if v.eq_ignore_ascii_case("scalar") => Self::scalar(),
            Ok(v) if v.eq_ignore_ascii_case("avx2") => Self::avx2().unwrap_or_else(Self::best),
            _ => Self::best(),
        }
    }

    /// AVX2+FMA, also on a CPU that has AVX-512 (to run and test that path); `None` where the
    /// CPU lacks it.
    pub fn avx2() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Some(Isa(Level::Avx2));
            }
        }
        None
    }

    /// The portable fallback: no FMA, no wide vectors, and a plain loop instead of the `gemm`
    /// crate for matrix products. Slow; exists so that every CPU runs and so that the SIMD path
    /// can be tested against it.
    pub fn scalar() -> Self {
        Isa(Level::Scalar)
    }

    /// The best instruction set this CPU supports (AVX-512, AVX2+FMA, NEON or the fallback).
    pub fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if fma && is_x86_feature_detected!("avx512f") {
                return Isa(Level::Avx512);
            }
            if fma {
                return Isa(Level::Avx2);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                return Isa(Level::Neon);
            }
        }
        Self::scalar()
    }

    /// Whether this is the portable fallback.
    pub fn is_scalar(self) -> bool {
        self.0 == Level::Scalar
    }

    /// Short name for reports: `scalar`, `avx2`, `avx512` or `neon`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Level::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => "avx512",
            #[cfg(target_arch = "aarch64")]
            Level::Neon => "neon",
        }
    }

    pub(crate) fn level(self) -> Level {
        self.0
    }
}

/// `a * b + c`, one rounding when the instruction set has FMA.
#[inline(always)]
pub(crate) fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Defines `fn name(isa: Isa, args...)` whose body is compiled for every instruction set (the
/// loops are written so that LLVM vectorises them for the enabled features) and dispatched on
/// `isa`. Inside the body the const `FMA` says whether `fmadd` may fuse, and `WIDE` whether
/// 512-bit vectors (32 registers) are available, for kernels that block differently there.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::isa::Isa, $($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            #[allow(unused)]
            fn body<const FMA: bool, const WIDE: bool>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) { body::<true, false>($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) { body::<true, true>($($arg),*) }
            #[cfg(target_arch = "aarch64")]
            #[target_feature(enable = "neon")]
            #[allow(clippy::too_many_arguments)]
            fn neon($($arg: $ty),*) { body::<true, false>($($arg),*) }
            match isa.level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an `Isa` with a SIMD level is only made after runtime detection.
                $crate::isa::Level::Avx2 => unsafe { avx2($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above (AVX-512 detected at run time).
                $crate::isa::Level::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "aarch64")]
                // SAFETY: as above (NEON detected at run time).
                $crate::isa::Level::Neon => unsafe { neon($($arg),*) },
                $crate::isa::Level::Scalar => body::<false, false>($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
