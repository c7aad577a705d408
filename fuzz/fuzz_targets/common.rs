//! Helpers shared by the fuzz targets (included with `#[path]`, not a crate).

#![allow(dead_code)]

use std::sync::OnceLock;

/// Largest tensor (in elements) a target will dequantize or materialise; bigger ones are skipped so that
/// a run measures the parser, not the allocator.
pub const MAX_ELEMENTS: usize = 1 << 20;

/// With `LLM2VEC_FUZZ_DEBUG` set, targets print what they accepted or rejected (to check seeds).
pub fn debug_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("LLM2VEC_FUZZ_DEBUG").is_some())
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::common::debug_enabled() {
            eprintln!($($arg)*);
        }
    };
}

/// With `LLM2VEC_FUZZ_SKIP_KNOWN` set, targets skip inputs that trigger the known, already reported problems
/// listed in README.md, so that a run can look past them. Off by default.
pub fn skip_known() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("LLM2VEC_FUZZ_SKIP_KNOWN").is_some())
}
