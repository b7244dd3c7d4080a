//! What kind of CPU runs the models, and the settings measured fastest on each kind. OpenVINO's
//! CPU plugin computes in bf16 and quantizes activations on the fly where the CPU has units for
//! it (AMX, AVX-512 BF16), which is several times faster there but draws a different picture
//! from the same seed than an f32 run does. So precision is a choice: `fast` (the default) runs
//! what the CPU does best, and the same seed gives the same picture on CPUs of the same class;
//! `f32` pins full precision, and the same seed gives the same picture everywhere.

use super::diffusion::UnetLinear;
use serde::{Deserialize, Serialize};

/// A CPU by the vector units that decide the models' speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuClass {
    /// AVX2 (and FMA) only, e.g. AMD EPYC up to Zen 3.
    Avx2,
    /// AVX-512 without AMX (it may have VNNI and BF16).
    Avx512,
    /// Intel AMX tiles (bf16 and int8 matrix units), e.g. Xeon Sapphire Rapids and later.
    Amx,
}

impl CpuClass {
    /// The class of a CPU whose `/proc/cpuinfo` flags are `flags`.
    pub fn from_flags(flags: &str) -> CpuClass {
        let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
        if has("amx_bf16") || has("amx_int8") {
            CpuClass::Amx
        } else if has("avx512f") {
            CpuClass::Avx512
        } else {
            CpuClass::Avx2
        }
    }

    /// This machine's class (read once); AVX2 when the flags cannot be read.
    pub fn detect() -> CpuClass {
        static CLASS: std::sync::OnceLock<CpuClass> = std::sync::OnceLock::new();
        *CLASS.get_or_init(|| {
            let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
            CpuClass::from_flags(flags)
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CpuClass::Avx2 => "avx2",
            CpuClass::Avx512 => "avx512",
            CpuClass::Amx => "amx",
        }
    }
}

/// How precisely the models compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// What the CPU runs fastest (bf16 where it has the units); the same seed gives the same
    /// picture on CPUs of the same class.
    #[default]
    Fast,
    /// f32 throughout: the same seed gives the same picture on every machine.
    F32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fast => "fast",
            Precision::F32 => "f32",
        }
    }
}

/// The image engine's settings for a CPU class and precision, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdSettings {
    pub properties: Vec<(String, String)>,
    pub unet_linear: UnetLinear,
    pub why: String,
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// f32 throughout, activations never quantized: the picture of a seed on any machine.
fn pinned_f32() -> Vec<(String, String)> {
    props(&[
        ("PERFORMANCE_HINT", "LATENCY"),
        ("INFERENCE_PRECISION_HINT", "f32"),
        ("DYNAMIC_QUANTIZATION_GROUP_SIZE", "0"),
    ])
}

/// The image engine's settings. `unet_linear` (`SD_UNET_LINEAR`) overrides the class's layout.
pub fn sd_settings(class: CpuClass, precision: Precision, unet_linear: Option<UnetLinear>) -> SdSettings {
    let (properties, layout, why) = match (class, precision) {
        // Measured on an AVX2-only EPYC (issue 4): f32 compute, the outer levels' weights
        // unpacked to f32 (the kernels decompress int8 weights at every step otherwise). The
        // plugin computes in f32 there anyway, so fast and f32 are the same.
        (CpuClass::Avx2, _) => (
            pinned_f32(),
            UnetLinear::F32Outer,
            "AVX2: f32 compute, outer UNet levels unpacked to f32 (measured fastest)",
        ),
        // No such machine was at hand: the AVX2 choice, which keeps pictures equal to AVX2's.
        (CpuClass::Avx512, _) => {
            (pinned_f32(), UnetLinear::F32Outer, "AVX-512 without AMX: the AVX2 settings (not measured on this class)")
        }
        // Measured on a Xeon with AMX (issue 21): the plugin's bf16 and its int8 units on the
        // UNet's weights as shipped run 3x faster than f32 with unpacked weights.
        (CpuClass::Amx, Precision::Fast) => (
            props(&[("PERFORMANCE_HINT", "LATENCY")]),
            UnetLinear::Int8,
            "AMX: the plugin's bf16 compute on the int8 weights as shipped (measured fastest)",
        ),
        (CpuClass::Amx, Precision::F32) => (
            pinned_f32(),
            UnetLinear::Int8,
            "AMX at f32: f32 compute, int8 weights as shipped (measured faster than unpacked here)",
        ),
    };
    let why = match unet_linear {
        Some(chosen) if chosen != layout => format!("{why}; UNet layout {chosen} set by SD_UNET_LINEAR"),
        _ => why.to_string(),
    };
    SdSettings { properties, unet_linear: unet_linear.unwrap_or(layout), why }
}

/// The chat engine's extra properties for a precision (the plugin's own choice when fast).
pub fn llm_properties(precision: Precision) -> Vec<(String, String)> {
    match precision {
        Precision::Fast => Vec::new(),
        Precision::F32 => props(&[("INFERENCE_PRECISION_HINT", "f32")]),
    }
}

/// What a picture's recipe records of how it was drawn: `f32`, or `fast` on a class.
pub fn drawn_at(class: CpuClass, precision: Precision) -> String {
    match precision {
        Precision::F32 => "f32".into(),
        Precision::Fast => format!("fast/{}", class.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_come_from_the_flags() {
        let epyc = "fpu vme sse4_2 avx avx2 fma bmi2";
        let skylake = "fpu avx2 fma avx512f avx512bw avx512_vnni";
        let sapphire = "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8";
        assert_eq!(CpuClass::from_flags(epyc), CpuClass::Avx2);
        assert_eq!(CpuClass::from_flags(skylake), CpuClass::Avx512);
        assert_eq!(CpuClass::from_flags(sapphire), CpuClass::Amx);
        assert_eq!(CpuClass::from_flags("flags\t: avx512fx"), CpuClass::Avx2, "whole flags only");
    }

    #[test]
    fn each_class_gets_its_measured_settings_and_f32_pins_precision() {
        let amx = sd_settings(CpuClass::Amx, Precision::Fast, None);
        assert_eq!(amx.unet_linear, UnetLinear::Int8);
        assert!(!amx.properties.iter().any(|(k, _)| k == "INFERENCE_PRECISION_HINT"), "{amx:?}");
        for class in [CpuClass::Avx2, CpuClass::Avx512, CpuClass::Amx] {
            let f32 = sd_settings(class, Precision::F32, None);
            assert!(f32.properties.contains(&("INFERENCE_PRECISION_HINT".into(), "f32".into())), "{class:?}");
        }
        assert_eq!(sd_settings(CpuClass::Avx2, Precision::Fast, None).unet_linear, UnetLinear::F32Outer);
        let forced = sd_settings(CpuClass::Amx, Precision::Fast, Some(UnetLinear::F32));
        assert_eq!(forced.unet_linear, UnetLinear::F32);
        assert!(forced.why.contains("SD_UNET_LINEAR"));
        assert_eq!(llm_properties(Precision::F32), vec![("INFERENCE_PRECISION_HINT".to_string(), "f32".to_string())]);
        assert!(llm_properties(Precision::Fast).is_empty());
        assert_eq!(
            (drawn_at(CpuClass::Amx, Precision::Fast), drawn_at(CpuClass::Amx, Precision::F32)),
            ("fast/amx".into(), "f32".into())
        );
    }
}
