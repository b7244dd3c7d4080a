//! The image engine on the fixture pipeline, through its engine thread: the reference image from
//! the reference latents, reproducible seeds, every scheduler, progress, cancellation and errors.

mod common;

use server::inference::{
    cpu::{self, CpuClass, Precision},
    diffusion::{
        image_file, ImageRequest, PipelineError, Progress, SchedulerKind, SdCompileOptions, SdEngine, SdModel,
        UnetLinear,
    },
    npy,
};
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

fn start() -> SdEngine {
    start_with(SdCompileOptions::default())
}

fn start_with(options: SdCompileOptions) -> SdEngine {
    common::load_runtime();
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = SdEngine::start(common::fixture(common::SD_FIXTURE), options, move |r| {
        tx.send(r.map(|_| ()).map_err(|e| e.to_string())).unwrap()
    })
    .unwrap();
    rx.recv().unwrap().expect("the fixture pipeline loads");
    engine
}

fn reference() -> serde_json::Value {
    let path = common::fixture("fixtures/reference/sd.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request(seed: u32, scheduler: SchedulerKind, steps: u32, guidance: f32) -> ImageRequest {
    ImageRequest {
        prompt: "a red fox in the snow, watercolor".into(),
        negative_prompt: "blurry, low quality".into(),
        steps,
        guidance_scale: guidance,
        width: 256,
        height: 256,
        seed,
        scheduler,
    }
}

fn decode_png(bytes: &[u8]) -> Vec<u8> {
    image_file::decode(bytes).unwrap().image.pixels
}

/// At f32 the picture is the reference's whatever the CPU: checked with the settings every CPU
/// class runs at `SD_PRECISION=f32` (AVX2's unpacked outer levels, AMX's int8 weights as shipped).
#[tokio::test]
async fn reference_latents_give_the_reference_image() {
    for class in [CpuClass::Avx2, CpuClass::Avx512, CpuClass::Amx] {
        let settings = cpu::sd_settings(class, Precision::F32, None);
        println!("{}: {}", class.name(), settings.why);
        let options = SdCompileOptions {
            properties: settings.properties,
            unet_linear: settings.unet_linear,
            drawn_at: cpu::drawn_at(class, Precision::F32),
            ..Default::default()
        };
        reference_image_with(start_with(options)).await;
    }
}

async fn reference_image_with(engine: SdEngine) {
    let refs = reference();
    let p = &refs["params"];
    assert_eq!(engine.default_scheduler(), SchedulerKind::Pndm);
    let request = ImageRequest {
        prompt: p["prompt"].as_str().unwrap().into(),
        negative_prompt: p["negative_prompt"].as_str().unwrap().into(),
        steps: p["num_inference_steps"].as_u64().unwrap() as u32,
        guidance_scale: p["guidance_scale"].as_f64().unwrap() as f32,
        width: p["width"].as_u64().unwrap() as u32,
        height: p["height"].as_u64().unwrap() as u32,
        seed: 0,
        scheduler: SchedulerKind::Pndm,
    };
    let latents = npy::read_f32(&common::fixture("fixtures/reference/sd_initial_latents.npy")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let output =
        engine.generate(request, Some(latents.data), Some(tx), Arc::new(AtomicBool::new(false))).await.unwrap();

    let expected = image_file::decode(&std::fs::read(common::fixture("fixtures/reference/sd_reference.png")).unwrap())
        .unwrap()
        .image;
    assert_eq!((output.image.width, output.image.height), (expected.width, expected.height));
    let diffs: Vec<u32> =
        output.image.pixels.iter().zip(&expected.pixels).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs()).collect();
    let max = *diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
    println!("pixel difference to the optimum-intel reference: max {max}, mean {mean:.6}");
    assert!(max <= 2 && mean <= 0.5, "max {max}, mean {mean}");

    // PNDM's 8 steps run the UNet 9 times; progress comes after each run, in order.
    let mut steps = Vec::new();
    while let Ok(Progress { step, total, .. }) = rx.try_recv() {
        assert_eq!(total, 9);
        steps.push(step);
    }
    assert_eq!(steps, (1..=9).collect::<Vec<_>>());
    assert_eq!(output.times.unet_ms.len(), 9);
}

/// The UNet's linear weights as shipped (int8), or unpacked to f32 in the outer levels or in all
/// (the default is the outer ones): the same picture, and the same picture again.
#[tokio::test]
async fn unpacking_the_unets_linear_weights_keeps_the_picture() {
    let refs = reference();
    let latents = npy::read_f32(&common::fixture("fixtures/reference/sd_initial_latents.npy")).unwrap().data;
    let fox = ImageRequest {
        prompt: refs["params"]["prompt"].as_str().unwrap().into(),
        negative_prompt: refs["params"]["negative_prompt"].as_str().unwrap().into(),
        ..request(0, SchedulerKind::Pndm, 8, 7.5)
    };
    // Twice through OpenVINO's cache as well: compiled, then imported (our weights then go).
    let cache = tempfile::tempdir().unwrap();
    let cached =
        |unet_linear| SdCompileOptions { unet_linear, cache_dir: Some(cache.path().into()), ..Default::default() };
    let ways = [UnetLinear::Int8, UnetLinear::F32Outer, UnetLinear::F32]
        .map(|w| SdCompileOptions { unet_linear: w, ..Default::default() });
    let mut images = Vec::new();
    for options in ways.into_iter().chain([cached(UnetLinear::F32Outer), cached(UnetLinear::F32Outer)]) {
        let unet_linear = options.unet_linear;
        let engine = start_with(options);
        let no = || Arc::new(AtomicBool::new(false));
        let first = engine.generate(fox.clone(), Some(latents.clone()), None, no()).await.unwrap();
        let again = engine.generate(fox.clone(), Some(latents.clone()), None, no()).await.unwrap();
        assert_eq!(first.png, again.png, "{unet_linear}: the same bytes twice");
        images.push((unet_linear, first.image.pixels));
    }
    let (_, int8) = &images[0];
    for (which, pixels) in &images[1..] {
        let max = pixels.iter().zip(int8).map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs()).max().unwrap();
        println!("{which} against int8: max pixel difference {max}");
        assert!(max <= 1, "{which}: max pixel difference {max} against the int8 weights");
    }
}

#[tokio::test]
async fn a_seed_gives_the_same_png_and_the_png_remakes_itself() {
    let engine = start();
    let cancel = || Arc::new(AtomicBool::new(false));
    let a = engine.generate(request(42, SchedulerKind::EulerA, 4, 7.5), None, None, cancel()).await.unwrap();
    let b = engine.generate(request(42, SchedulerKind::EulerA, 4, 7.5), None, None, cancel()).await.unwrap();
    assert_eq!(a.png, b.png, "same seed, same bytes");
    let c = engine.generate(request(43, SchedulerKind::EulerA, 4, 7.5), None, None, cancel()).await.unwrap();
    assert_ne!(decode_png(&a.png), decode_png(&c.png), "another seed, another image");

    let recipe = image_file::read_request(&a.png).unwrap();
    assert_eq!(recipe, request(42, SchedulerKind::EulerA, 4, 7.5));
    let again = engine.generate(recipe, None, None, cancel()).await.unwrap();
    assert_eq!(again.png, a.png, "the PNG's own recipe makes it again");
    let texts = image_file::decode(&a.png).unwrap().texts;
    let params = &texts.iter().find(|(k, _)| k == "parameters").unwrap().1;
    assert!(params.contains("Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 256x256"), "{params}");
}

#[tokio::test]
async fn every_scheduler_and_the_unguided_path_make_an_image() {
    let engine = start();
    for (kind, guidance) in SchedulerKind::ALL.into_iter().flat_map(|k| [(k, 7.5), (k, 1.0)]) {
        let output = engine
            .generate(request(7, kind, 3, guidance), None, None, Arc::new(AtomicBool::new(false)))
            .await
            .unwrap_or_else(|e| panic!("{kind:?} at guidance {guidance}: {e}"));
        let pixels = &output.image.pixels;
        assert_eq!(pixels.len(), 256 * 256 * 3);
        let distinct = pixels.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 16, "{kind:?} at {guidance}: a flat image ({distinct} values)");
    }
}

#[tokio::test]
async fn cancelling_stops_between_steps_and_the_engine_carries_on() {
    let engine = start();
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job = {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        tokio::spawn(
            async move { engine.generate(request(1, SchedulerKind::Ddim, 50, 7.5), None, Some(tx), cancel).await },
        )
    };
    let first = rx.recv().await.expect("a first step");
    assert_eq!(first.step, 1);
    cancel.store(true, Ordering::Relaxed);
    let result = job.await.unwrap();
    assert!(matches!(result, Err(PipelineError::Cancelled)), "{:?}", result.err());
    let mut last = first.step;
    while let Ok(p) = rx.try_recv() {
        last = p.step;
    }
    assert!(last < 50, "stopped after step {last} of 50");
    let after = engine.generate(request(1, SchedulerKind::Ddim, 2, 7.5), None, None, Arc::new(AtomicBool::new(false)));
    assert!(after.await.is_ok());
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let engine = start();
    let no = || Arc::new(AtomicBool::new(false));
    let bad = ImageRequest { width: 250, ..request(1, SchedulerKind::Pndm, 4, 7.5) };
    match engine.generate(bad, None, None, no()).await {
        Err(PipelineError::Invalid(e)) => assert_eq!(e.field, "width"),
        other => panic!("{:?}", other.err()),
    }
    match engine.generate(request(1, SchedulerKind::Pndm, 4, 7.5), Some(vec![0.0; 10]), None, no()).await {
        Err(PipelineError::Invalid(e)) => assert!(e.field == "latents" && e.message.contains("4096"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
    match engine.generate(request(1, SchedulerKind::Lcm, 60, 7.5), None, None, no()).await {
        Err(PipelineError::Scheduler(e)) => assert!(e.to_string().contains("between 1 and 50"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn a_folder_without_the_pipeline_names_the_missing_files() {
    let empty = tempfile::tempdir().unwrap();
    let err = SdModel::load(empty.path(), &Default::default()).err().unwrap().to_string();
    assert!(err.contains("unet/openvino_model.xml") && err.contains("model_index.json"), "{err}");
}

/// The fixture pipeline with the tiny safety checker added, in a temporary folder, in one of its
/// two forms: `safetensors` (config.json + model.safetensors, as the real SD 1.5 repository ships
/// it) or `openvino` (an OpenVINO export of the whole checker).
fn pipeline_with_safety_checker(form: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_tree(&common::fixture(common::SD_FIXTURE), dir.path());
    common::copy_tree(&common::fixture(common::SD_SAFETY_FIXTURE), dir.path());
    let other = match form {
        "safetensors" => ["openvino_model.xml", "openvino_model.bin"],
        "openvino" => ["model.safetensors", "config.json"],
        _ => unreachable!(),
    };
    for name in other {
        std::fs::remove_file(dir.path().join("safety_checker").join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn the_nsfw_filter_blacks_out_what_the_checker_flags() {
    let refs = reference();
    let latents = npy::read_f32(&common::fixture("fixtures/reference/sd_initial_latents.npy")).unwrap().data;
    let fox = || ImageRequest {
        prompt: refs["params"]["prompt"].as_str().unwrap().into(),
        negative_prompt: refs["params"]["negative_prompt"].as_str().unwrap().into(),
        ..request(0, SchedulerKind::Pndm, 8, 7.5)
    };
    for form in ["safetensors", "openvino"] {
        let dir = pipeline_with_safety_checker(form);
        let start_with = |safety_checker: bool| {
            let (tx, rx) = std::sync::mpsc::channel();
            let options = SdCompileOptions { safety_checker, ..Default::default() };
            let engine = SdEngine::start(dir.path().into(), options, move |r| tx.send(r.is_ok()).unwrap()).unwrap();
            assert!(rx.recv().unwrap());
            engine
        };
        start(); // loads the runtime
        let no = || Arc::new(AtomicBool::new(false));

        // Off (the default): no check, the picture as made.
        let plain = start_with(false).generate(fox(), Some(latents.clone()), None, no()).await.unwrap();
        assert_eq!(plain.nsfw, None);
        assert!(plain.image.pixels.iter().any(|&p| p > 0));

        // On: the fixture checker fires for the reference fox (as diffusers decided), so it is black.
        let filtered = start_with(true).generate(fox(), Some(latents.clone()), None, no()).await.unwrap();
        assert_eq!(filtered.nsfw, Some(true));
        assert!(filtered.image.pixels.iter().all(|&p| p == 0));
        assert!(decode_png(&filtered.png).iter().all(|&p| p == 0), "the PNG holds the blacked-out image");
    }
}

#[test]
fn the_safety_checker_decides_as_diffusers_and_preprocesses_like_clip() {
    use server::inference::diffusion::safety::{ClipPreprocess, SafetyChecker};
    start();
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture("fixtures/reference/sd_safety.json")).unwrap())
            .unwrap();
    let fox = image_file::decode(&std::fs::read(common::fixture("fixtures/reference/sd_reference.png")).unwrap())
        .unwrap()
        .image;
    let expected = npy::read_f32(&common::fixture("fixtures/reference/sd_safety_clip_input.npy")).unwrap();
    let ours = ClipPreprocess::default().apply(&fox);
    let max = ours.iter().zip(&expected.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("clip_input against CLIPImageProcessor: max abs difference {max}");
    // One 8-bit level is 1/255/std ≈ 0.015 after normalisation.
    assert!(max < 0.031, "clip_input differs from CLIPImageProcessor's by up to {max}");
    let grey = image_file::RgbImage { width: 256, height: 256, pixels: vec![128; 256 * 256 * 3] };

    for form in ["safetensors", "openvino"] {
        let dir = pipeline_with_safety_checker(form);
        let mut checker = SafetyChecker::load(&mut server::inference::new_core().unwrap(), dir.path(), "CPU")
            .unwrap()
            .expect("the fixture has a safety checker");
        assert_eq!(checker.form(), form);
        assert_eq!(checker.flags(&fox).unwrap(), refs["flagged"]["sd_reference.png"].as_bool().unwrap(), "{form}");
        assert_eq!(checker.flags(&grey).unwrap(), refs["flagged"]["grey_128"].as_bool().unwrap(), "{form}");
        if form == "openvino" {
            continue;
        }
        // The same inputs as diffusers: every concept's score equals StableDiffusionSafetyChecker's.
        let inputs =
            [("sd_reference.png", expected.data.clone()), ("grey_128", ClipPreprocess::default().apply(&grey))];
        for (name, clip_input) in inputs {
            let verdict = checker.judge(&clip_input, (224, 224)).unwrap().expect("scores from the safetensors form");
            let want = &refs["scores"][name];
            for (ours, key) in [(&verdict.special, "special"), (&verdict.concept, "concept")] {
                let theirs: Vec<f64> = want[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                assert_eq!(ours.len(), theirs.len(), "{name} {key}");
                let max = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
                println!("{name}: {key} scores within {max:.2e} of diffusers'");
                assert!(max < 1e-4, "{name}: {key} scores {ours:?} against diffusers' {theirs:?}");
            }
            assert_eq!(verdict.nsfw, refs["flagged"][name].as_bool().unwrap(), "{name}");
        }
    }
    assert!(SafetyChecker::load(
        &mut server::inference::new_core().unwrap(),
        &common::fixture(common::SD_FIXTURE),
        "CPU"
    )
    .unwrap()
    .is_none());

    // A safety_checker/ folder with neither form names what it lacks; a broken config says why.
    let dir = pipeline_with_safety_checker("safetensors");
    std::fs::write(dir.path().join("safety_checker/config.json"), r#"{"vision_config": {"hidden_act": "gelu"}}"#)
        .unwrap();
    let err = SafetyChecker::load(&mut server::inference::new_core().unwrap(), dir.path(), "CPU").err().unwrap();
    assert!(err.to_string().contains("hidden_act"), "{err}");
    std::fs::remove_file(dir.path().join("safety_checker/model.safetensors")).unwrap();
    let err = SafetyChecker::load(&mut server::inference::new_core().unwrap(), dir.path(), "CPU").err().unwrap();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
