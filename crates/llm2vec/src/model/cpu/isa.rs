//! Which instruction set the CPU kernels run on: the widest the processor has (AVX-512; AVX2 with FMA
//! and AVX-VNNI, whose 256-bit byte products only the 8-bit products use; AVX2 with FMA; else portable
//! scalar code), or a narrower one named by `LLM2VEC_CPU_ISA` (`avx512`, `avxvnni`, `avx2`, `scalar`),
//! so that every path can be tested, and compared, on any machine.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The environment variable that narrows the instruction set.
pub const ENV: &str = "LLM2VEC_CPU_ISA";

/// An instruction-set path of the CPU kernels, narrowest first. A processor need not have every path
/// below its widest: AVX-512 came before AVX-VNNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512,
}

impl Isa {
    const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this processor runs the path.
    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = || std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            match self {
                Isa::Scalar => true,
                Isa::Avx2 => avx2(),
                Isa::AvxVnni => avx2() && std::arch::is_x86_feature_detected!("avxvnni"),
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }

    /// The widest path this processor runs.
    pub fn detected() -> Isa {
        Isa::Avx512.narrowed()
    }

    /// The widest path, no wider than this one, that this processor runs.
    pub fn narrowed(self) -> Isa {
        self.narrowed_among(Isa::available)
    }

    /// The widest path, no wider than this one, of those that `has`.
    fn narrowed_among(self, has: impl Fn(Isa) -> bool) -> Isa {
        Isa::ALL.into_iter().rev().find(|&isa| isa <= self && has(isa)).unwrap_or(Isa::Scalar)
    }

    /// Every path this processor runs, narrowest first (the kernels' tests run each).
    #[cfg(test)]
    pub fn supported() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.available())
    }

    /// The path the kernels take: `LLM2VEC_CPU_ISA` when it names one this processor runs (another is
    /// narrowed to the widest below it that it has), else the widest. Read once.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| requested().ok().flatten().unwrap_or_else(Isa::detected))
    }
}

/// Fails with a clear message when `LLM2VEC_CPU_ISA` is set to something that is not a path's name.
pub fn check_env() -> Result<()> {
    requested().map(|_| ())
}

fn requested() -> Result<Option<Isa>> {
    match std::env::var(ENV) {
        Ok(value) => parse(&value).map(|isa| Some(isa.narrowed())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env { name: ENV, msg: "not valid UTF-8".into() }),
    }
}

/// The path named by `value` (case-insensitive).
fn parse(value: &str) -> Result<Isa> {
    Isa::ALL.into_iter().find(|isa| isa.name().eq_ignore_ascii_case(value.trim())).ok_or_else(|| Error::Env {
        name: ENV,
        msg: format!("unknown instruction set `{value}`; expected one of avx512, avxvnni, avx2, scalar"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for isa in Isa::ALL {
            assert_eq!(parse(isa.name()).unwrap(), isa);
            assert_eq!(parse(&isa.name().to_uppercase()).unwrap(), isa);
        }
        assert_eq!(parse(" scalar ").unwrap(), Isa::Scalar);
    }

    #[test]
    fn a_path_is_narrowed_to_the_widest_below_it_that_the_processor_has() {
        // AVX-512 without AVX-VNNI (the first AVX-512 processors), and AVX-VNNI without AVX-512.
        let older = |isa| isa != Isa::AvxVnni;
        assert_eq!(Isa::AvxVnni.narrowed_among(older), Isa::Avx2);
        assert_eq!(Isa::Avx512.narrowed_among(older), Isa::Avx512);
        let newer = |isa| isa != Isa::Avx512;
        assert_eq!(Isa::Avx512.narrowed_among(newer), Isa::AvxVnni);
        assert_eq!(Isa::Avx2.narrowed_among(newer), Isa::Avx2);
        assert_eq!(Isa::Avx512.narrowed_among(|isa| isa == Isa::Scalar), Isa::Scalar);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_the_variable() {
        let err = parse("sse9").unwrap_err().to_string();
        assert!(err.contains("LLM2VEC_CPU_ISA") && err.contains("sse9"), "{err}");
    }

    #[test]
    fn supported_paths_run_from_scalar_to_the_detected_one() {
        let paths: Vec<Isa> = Isa::supported().collect();
        assert_eq!(paths.first(), Some(&Isa::Scalar));
        assert_eq!(paths.last(), Some(&Isa::detected()));
        assert!(paths.contains(&Isa::active()));
    }
}
