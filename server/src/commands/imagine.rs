//! `server imagine`: one image from a Stable Diffusion folder, written as PNG with its recipe.

use super::load_runtime;
use crate::{
    cli::ImagineArgs,
    config::Config,
    inference::{
        cpu::{CpuClass, Precision},
        diffusion::{image_file, pipeline, request::ImageParams, SdModel},
        npy,
    },
};
use std::{io::Write, sync::atomic::AtomicBool, time::Instant};

pub fn run(config: &Config, args: ImagineArgs) -> Result<(), String> {
    let (base, recorded) = match &args.from {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let request = image_file::read_request(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let precision = image_file::read_precision(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            (Some(request), precision)
        }
        None => (None, None),
    };
    // A picture is remade at the precision it was drawn at.
    let precision = match recorded.as_deref() {
        Some("f32") => Precision::F32,
        Some(fast) if fast.starts_with("fast/") => {
            let here = CpuClass::detect().name();
            if &fast["fast/".len()..] != here {
                eprintln!(
                    "warning: the picture was drawn at fast precision on a {} CPU and this one is {here}: \
                     the result may differ (pictures drawn with SD_PRECISION=f32 are the same everywhere)",
                    &fast["fast/".len()..]
                );
            }
            Precision::Fast
        }
        _ => config.images.precision,
    };
    let latents = match &args.latents {
        Some(path) => Some(npy::read_f32(path).map_err(|e| format!("--latents: {e}"))?.data),
        None => None,
    };
    load_runtime(config)?;
    let started = Instant::now();
    let mut model = SdModel::load(&args.model, &config.sd_compile_options_at(precision)).map_err(|e| e.to_string())?;
    let params = ImageParams {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        steps: args.steps,
        guidance_scale: args.guidance,
        width: args.width,
        height: args.height,
        seed: args.seed,
        scheduler: args.scheduler.clone(),
    };
    let request = params
        .resolve(base, model.default_scheduler())
        .map_err(|e| format!("--{}: {}", cli_flag(e.field), e.message))?;
    let quiet = args.json;
    let mut progress = |p: pipeline::Progress| {
        if !quiet {
            eprint!("\rstep {}/{} ({:.1} s)", p.step, p.total, p.elapsed_ms as f64 / 1000.0);
            let _ = std::io::stderr().flush();
        }
    };
    let output = pipeline::generate(&mut model, &request, latents.as_deref(), &mut progress, &AtomicBool::new(false))
        .map_err(|e| e.to_string())?;
    if !quiet {
        eprintln!();
    }
    std::fs::write(&args.out, &output.png).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    if args.json {
        let line = serde_json::json!({
            "path": args.out,
            "seed": request.seed,
            "total_ms": total_ms,
            "request": request,
            "times": output.times,
            // true: the NSFW filter blacked the image out; null: no filter ran.
            "nsfw": output.nsfw,
            // With injected latents the seed played no part: the file alone cannot remake it.
            "latents": args.latents,
        });
        println!("{line}");
    } else {
        let filtered = if output.nsfw == Some(true) { ", flagged by the NSFW filter and blacked out" } else { "" };
        println!("{} (seed {}, {:.1} s{filtered})", args.out.display(), request.seed, total_ms / 1000.0);
    }
    Ok(())
}

/// The command-line flag for a request field (`guidance_scale` is `--guidance`).
fn cli_flag(field: &str) -> String {
    match field {
        "guidance_scale" => "guidance".into(),
        other => other.replace('_', "-"),
    }
}
