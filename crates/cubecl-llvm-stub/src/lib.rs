//! Stub of `cubecl-llvm` 0.11.3 (see `README.md`).
//!
//! cubecl-cuda 0.11.3 always links cubecl-llvm, whose build script downloads a prebuilt LLVM.
//! effnet selects cubecl-cuda's NVRTC compiler (feature `cpp`), which never reaches the LLVM
//! backend, so this crate provides only the names cubecl-cuda 0.11.3 refers to:
//!
//! * `nvptx::ptx_version::PtxVersion` (`for_driver`, `Display`),
//! * `shared::lowered_features::{GpuTarget, restrict_features}`,
//! * `PlironCompiler`, `PlironOptions`, `PlironArtifact::NvptxCode`, `NvptxModule`, `LlvmTarget`.
//!
//! Reaching the LLVM backend is an error, never silent: [`PlironCompiler`]'s `compile` returns
//! [`UNAVAILABLE`] as a compilation error and [`shared::lowered_features::restrict_features`]
//! (called by cubecl-cuda at device start-up only when the LLVM backend is selected) panics with it.

use core::fmt;

use cubecl_core::environment::backtrace::BackTrace;
use cubecl_runtime::compiler::{CompilationError, Compiler};
use cubecl_runtime::kernel::{BufferIOAttr, KernelDefinition};

/// What every path into the missing backend reports.
pub const UNAVAILABLE: &str = "LLVM/NVPTX backend is not compiled in; effnet builds cubecl-cuda \
                               with the NVRTC (cpp) compiler";

/// Code generation targets of the real crate; only the NVPTX one is named by cubecl-cuda.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlvmTarget {
    /// The CPU JIT target (cubecl-cpu); present for the real crate's default.
    #[default]
    Cpu,
    /// NVIDIA PTX.
    #[cfg(feature = "nvptx")]
    Nvptx,
}

/// The LLVM kernel compiler. This stub holds the target and refuses to compile.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// Which target the compiler would emit for.
    pub target: LlvmTarget,
}

/// Options cubecl-cuda fills in for the LLVM backend; read by nothing here.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture name in the real crate; cubecl-cuda only ever passes `None`.
    pub arch: Option<String>,
    /// Compute capability of the device.
    #[cfg(feature = "nvptx")]
    pub sm_arch: Option<cubecl_core::ir::nvidia::SmArch>,
    /// PTX ISA version to emit.
    #[cfg(feature = "nvptx")]
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    /// Whether scalars and metadata travel in the kernel parameter block.
    pub grid_constants: bool,
}

/// A compiled PTX module, as cubecl-cuda's LLVM path would load it. Never produced by the stub.
#[cfg(feature = "nvptx")]
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// NUL-terminated PTX text.
    pub ptx: Vec<core::ffi::c_char>,
    /// Kernel entry point symbol.
    pub entrypoint: String,
    /// LLVM IR, for logs.
    pub ir: String,
    /// Dynamic shared memory per launch, in bytes.
    pub shared_memory_size: usize,
    /// Buffer access modes, in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What [`PlironCompiler`] would produce. Non-exhaustive, as cubecl-cuda's match expects other
/// variants to exist.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PlironArtifact {
    /// A PTX module for the CUDA runtime.
    #[cfg(feature = "nvptx")]
    NvptxCode(NvptxModule),
}

impl fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
            #[allow(unreachable_patterns)]
            _ => f.write_str("<no artifact>"),
        }
    }
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: UNAVAILABLE.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn extension(&self) -> &'static str {
        "ll"
    }

    fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

/// NVPTX-specific items.
#[cfg(feature = "nvptx")]
pub mod nvptx {
    /// The PTX ISA version the LLVM backend would emit.
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version, two digits as in the NVPTX feature name: 8.7 is `87`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(pub u32);

        impl PtxVersion {
            /// The PTX version to emit for a driver (`cuDriverGetVersion`, 12.8 = `12080`).
            ///
            /// Always `None` (the real crate's answer for "no preference"): nothing in this build
            /// emits PTX. The NVRTC path ignores this value.
            pub fn for_driver(_driver: i32) -> Option<Self> {
                None
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }
    }
}

/// Items shared by the GPU targets.
pub mod shared {
    /// Narrowing a device's advertised features to what the LLVM backend lowers.
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        /// The GPU target whose features would be narrowed.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum GpuTarget {
            /// NVIDIA PTX.
            #[cfg(feature = "nvptx")]
            Nvptx,
        }

        /// cubecl-cuda calls this while starting a device, and only when its LLVM backend is
        /// selected, i.e. when cubecl-cuda was built without `cpp`. This build cannot run that
        /// backend, so it stops here, before any kernel is launched.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {
            panic!("{}", crate::UNAVAILABLE);
        }
    }
}
