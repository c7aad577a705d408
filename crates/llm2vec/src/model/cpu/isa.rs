//! Which instruction set the CPU kernels run on: the widest the processor has (AVX-512, AVX2 with FMA,
//! else portable scalar code), or a narrower one named by `LLM2VEC_CPU_ISA` (`avx512`, `avx2`, `scalar`),
//! so that every path can be tested, and compared, on any machine.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The environment variable that narrows the instruction set.
pub const ENV: &str = "LLM2VEC_CPU_ISA";

/// An instruction-set path of the CPU kernels, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The widest path this processor runs.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Every path this processor runs, narrowest first (the kernels' tests run each).
    #[cfg(test)]
    pub fn supported() -> impl Iterator<Item = Isa> {
        let widest = Isa::detected();
        Isa::ALL.into_iter().filter(move |&isa| isa <= widest)
    }

    /// The path the kernels take: `LLM2VEC_CPU_ISA` when it names one this processor runs (a wider one
    /// is narrowed to what it has), else the widest. Read once.
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
        Ok(value) => parse(&value, Isa::detected()).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Env { name: ENV, msg: "not valid UTF-8".into() }),
    }
}

/// The path named by `value` (case-insensitive), no wider than `widest`.
fn parse(value: &str, widest: Isa) -> Result<Isa> {
    let wanted =
        Isa::ALL.into_iter().find(|isa| isa.name().eq_ignore_ascii_case(value.trim())).ok_or_else(|| Error::Env {
            name: ENV,
            msg: format!("unknown instruction set `{value}`; expected one of avx512, avx2, scalar"),
        })?;
    Ok(wanted.min(widest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_are_narrowed_to_the_processor() {
        for isa in Isa::ALL {
            assert_eq!(parse(isa.name(), Isa::Avx512).unwrap(), isa);
            assert_eq!(parse(&isa.name().to_uppercase(), Isa::Avx512).unwrap(), isa);
        }
        assert_eq!(parse("avx512", Isa::Avx2).unwrap(), Isa::Avx2);
        assert_eq!(parse(" scalar ", Isa::Avx2).unwrap(), Isa::Scalar);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_the_variable() {
        let err = parse("sse9", Isa::Avx2).unwrap_err().to_string();
        assert!(err.contains("LLM2VEC_CPU_ISA") && err.contains("sse9"), "{err}");
    }

    #[test]
    fn supported_paths_run_from_scalar_to_the_detected_one() {
        let paths: Vec<Isa> = Isa::supported().collect();
        assert_eq!(paths.first(), Some(&Isa::Scalar));
        assert_eq!(paths.last(), Some(&Isa::detected()));
        assert!(Isa::active() <= Isa::detected());
    }
}
