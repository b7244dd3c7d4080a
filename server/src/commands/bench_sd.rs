//! `server bench sd`: load time and per-image timings of the image engine, as one JSON line
//! (medians; the first image is a discarded warm-up). bench/sd.py runs this beside
//! openvino-genai's Text2ImagePipeline on the same model, size, steps and scheduler.

use super::{
    load_runtime,
    measure::{median, peak_rss_mb},
    override_properties,
};
use crate::{
    cli::BenchSdArgs,
    config::Config,
    inference::diffusion::{pipeline, request::ImageParams, SdModel},
};
use std::{sync::atomic::AtomicBool, time::Instant};

/// The prompt bench/sd.py gives GenAI too.
pub const BENCH_PROMPT: &str = "a watercolor painting of a red fox in the snow, soft light";
pub const BENCH_NEGATIVE: &str = "blurry, low quality";

pub fn run(config: &Config, args: BenchSdArgs) -> Result<(), String> {
    load_runtime(config)?;
    let mut options = config.sd_compile_options();
    options.static_shapes = !args.dynamic;
    if args.no_cache {
        options.cache_dir = None;
    }
    override_properties(&mut options.properties, &args.property);
    let started = Instant::now();
    let mut model = SdModel::load(&args.model, &options).map_err(|e| e.to_string())?;
    let default_scheduler = model.default_scheduler();
    let request = |seed| {
        ImageParams {
            prompt: Some(BENCH_PROMPT.into()),
            negative_prompt: Some(BENCH_NEGATIVE.into()),
            steps: Some(args.steps),
            guidance_scale: Some(args.guidance),
            width: Some(args.width),
            height: Some(args.height),
            seed: Some(seed),
            scheduler: args.scheduler.clone(),
        }
        .resolve(None, default_scheduler)
        .map_err(|e| e.to_string())
    };
    let first = request(0)?;
    model.prepare(first.width, first.height, first.unet_batch()).map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (mut total, mut unet, mut text, mut vae, mut png) = (vec![], vec![], vec![], vec![], vec![]);
    let mut unet_runs = 0;
    for run in 0..=args.runs {
        let request = request(run as u32)?;
        let t = Instant::now();
        let output = pipeline::generate(&mut model, &request, None, &mut |_| {}, &AtomicBool::new(false))
            .map_err(|e| e.to_string())?;
        unet_runs = output.times.unet_ms.len();
        if run > 0 {
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            unet.push(median(&mut output.times.unet_ms.clone()));
            text.push(output.times.text_encode_ms);
            vae.push(output.times.vae_ms);
            png.push(output.times.png_ms);
        }
    }
    let line = serde_json::json!({
        "total_ms": median(&mut total),
        "unet_step_ms": median(&mut unet),
        "text_encode_ms": median(&mut text),
        "vae_ms": median(&mut vae),
        "png_ms": median(&mut png),
        "load_ms": load_ms,
        "width": first.width,
        "height": first.height,
        "steps": first.steps,
        "unet_runs": unet_runs,
        "scheduler": first.scheduler,
        "guidance_scale": first.guidance_scale,
        "static_shapes": options.static_shapes,
        "properties": options.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "cpu_class": crate::inference::cpu::CpuClass::detect().name(),
        "drawn_at": options.drawn_at,
        "unet_linear": options.unet_linear.to_string(),
        "runs": args.runs,
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{line}");
    Ok(())
}
