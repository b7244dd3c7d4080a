//! `server bench safety`: what the NSFW filter adds per image, as one JSON line (medians; the
//! first check is a discarded warm-up). bench/safety.py runs this beside diffusers'
//! StableDiffusionSafetyChecker on the same checker files and the same picture.

use super::{
    load_runtime,
    measure::{median, peak_rss_mb},
};
use crate::{
    cli::BenchSafetyArgs,
    config::Config,
    inference::diffusion::{image_file, safety::SafetyChecker},
};
use std::time::Instant;

pub fn run(config: &Config, args: BenchSafetyArgs) -> Result<(), String> {
    load_runtime(config)?;
    let bytes = std::fs::read(&args.image).map_err(|e| format!("{}: {e}", args.image.display()))?;
    let image = image_file::decode(&bytes).map_err(|e| format!("{}: {e}", args.image.display()))?.image;
    let started = Instant::now();
    let mut core = crate::inference::new_core().map_err(|e| e.to_string())?;
    let mut checker = SafetyChecker::load(&mut core, &args.model, "CPU")
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no safety_checker/ folder", args.model.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (mut times, mut nsfw) = (Vec::new(), false);
    for run in 0..=args.runs {
        let t = Instant::now();
        nsfw = checker.flags(&image).map_err(|e| e.to_string())?;
        if run > 0 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let line = serde_json::json!({
        "check_ms": median(&mut times),
        "load_ms": load_ms,
        "form": checker.form(),
        "nsfw": nsfw,
        "width": image.width,
        "height": image.height,
        "runs": args.runs,
        "cpu_class": crate::inference::cpu::CpuClass::detect().name(),
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{line}");
    Ok(())
}
