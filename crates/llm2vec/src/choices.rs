//! The encoder's choices as users spell them, in one place for the command line and the Python package:
//! attention modes, precisions and devices (pooling modes are named in [`crate::pool`]). With the `clap`
//! feature the enums are also command-line values, under the same names.

use std::str::FromStr;

use candle_core::{DType, Device, DeviceLocation};

use crate::error::{Error, Result};
use crate::model::AttentionMode;

impl AttentionMode {
    /// Every mode, in the order help texts list them.
    pub const ALL: [AttentionMode; 2] = [AttentionMode::Bidirectional, AttentionMode::Causal];

    /// The mode's name, as options and config files spell it.
    pub fn name(self) -> &'static str {
        match self {
            AttentionMode::Bidirectional => "bidirectional",
            AttentionMode::Causal => "causal",
        }
    }
}

impl FromStr for AttentionMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::Input(format!("unknown attention mode `{s}`; expected bidirectional or causal")))
    }
}

/// The number format the model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE 16-bit floats.
    F16,
    /// 8-bit linear layers ([`crate::Options::quantize`]), f32 elsewhere.
    Q8,
}

impl Precision {
    /// Every precision, in the order help texts list them.
    pub const ALL: [Precision; 4] = [Precision::F32, Precision::Bf16, Precision::F16, Precision::Q8];

    /// The short name (`f32`, `bf16`, `f16`, `q8`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
            Precision::Q8 => "q8",
        }
    }

    /// The dtype of the weights and activations (q8 keeps what it does not quantize in f32).
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 | Precision::Q8 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }

    /// Whether the linear layers run on quantized weights ([`crate::Options::quantize`]).
    pub fn quantize(self) -> bool {
        self == Precision::Q8
    }
}

/// The short names, and PyTorch's (`float32`, `bfloat16`, `float16`, `half`, ..., also as `torch.bfloat16`).
impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.strip_prefix("torch.").unwrap_or(s) {
            "float32" | "float" | "f32" | "fp32" => Ok(Precision::F32),
            "bfloat16" | "bf16" => Ok(Precision::Bf16),
            "float16" | "half" | "f16" | "fp16" => Ok(Precision::F16),
            "q8" => Ok(Precision::Q8),
            _ => Err(Error::Input(format!("dtype `{s}`: expected float32, bfloat16, float16 or q8"))),
        }
    }
}

/// Opens the device named `cpu`, `cuda` or `cuda:N`. A name of another form is an input error; a CUDA device
/// that cannot be opened (no `cuda` feature, no such GPU) is an [`Error::Internal`] naming the device.
pub fn parse_device(spec: &str) -> Result<Device> {
    let ordinal = match spec {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match spec.strip_prefix("cuda:") {
            Some(n) => n.parse().map_err(|_| {
                Error::Input(format!("device `{spec}`: bad ordinal; expected cuda:N, N a whole number"))
            })?,
            None => return Err(Error::Input(format!("device `{spec}`: expected cpu, cuda or cuda:N"))),
        },
    };
    Device::new_cuda(ordinal).map_err(|e| Error::internal(format!("device `{spec}`: {e}")))
}

/// The name [`parse_device`] takes for `device`: `cpu` or `cuda:N`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Each enum as a `clap` value: its variants under their names above.
#[cfg(feature = "clap")]
mod cli {
    use clap::builder::PossibleValue;
    use clap::ValueEnum;

    use super::{AttentionMode, Precision};
    use crate::pool::Pooling;

    impl ValueEnum for Pooling {
        fn value_variants<'a>() -> &'a [Self] {
            &Pooling::ALL
        }

        fn to_possible_value(&self) -> Option<PossibleValue> {
            Some(PossibleValue::new(self.name()))
        }
    }

    impl ValueEnum for AttentionMode {
        fn value_variants<'a>() -> &'a [Self] {
            &AttentionMode::ALL
        }

        fn to_possible_value(&self) -> Option<PossibleValue> {
            Some(PossibleValue::new(self.name()))
        }
    }

    impl ValueEnum for Precision {
        fn value_variants<'a>() -> &'a [Self] {
            &Precision::ALL
        }

        fn to_possible_value(&self) -> Option<PossibleValue> {
            let value = PossibleValue::new(self.name());
            Some(match self {
                Precision::Q8 => {
                    value.help("integer products in the linear layers: 8-bit activations, 8-bit weights or 4-bit ones kept as read (CPU; the rest in f32)")
                }
                _ => value,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for mode in AttentionMode::ALL {
            assert_eq!(mode.name().parse::<AttentionMode>().unwrap(), mode);
        }
        for precision in Precision::ALL {
            assert_eq!(precision.name().parse::<Precision>().unwrap(), precision);
        }
        assert_eq!("torch.bfloat16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!("int4".parse::<Precision>().unwrap_err().to_string().contains("dtype `int4`: expected float32"));
    }

    #[test]
    fn devices_are_cpu_cuda_or_cuda_n() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for (spec, want) in [
            ("cpu:7", "device `cpu:7`: expected cpu, cuda or cuda:N"),
            ("gpu", "device `gpu`: expected cpu, cuda or cuda:N"),
            ("cudax", "device `cudax`: expected cpu, cuda or cuda:N"),
            ("cuda:x", "device `cuda:x`: bad ordinal"),
            ("cuda:", "device `cuda:`: bad ordinal"),
            ("cuda:-1", "device `cuda:-1`: bad ordinal"),
        ] {
            let err = parse_device(spec).unwrap_err();
            assert!(matches!(err, Error::Input(_)) && err.to_string().contains(want), "{spec}: {err}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_device() {
        let err = parse_device("cuda:1").unwrap_err();
        assert!(matches!(err, Error::Internal(_)) && err.to_string().starts_with("device `cuda:1`: "), "{err}");
    }
}
