//! Every scheduler against diffusers, on three configurations (SD 1.5's; linear betas with
//! linspace spacing and v-prediction; cosine betas with trailing spacing, except DPM++ with
//! Karras sigmas, which diffusers cannot map back to timesteps there): timesteps, sigmas,
//! the initial noise scale, and the sample after a full run with a stand-in UNet. The expected
//! numbers come from scripts/fixtures/scheduler_expectations.py.

use super::expected::{CASES, CONFIGS, SAMPLE, STEPS};
use super::*;

/// The stand-in UNet of the generator script: 0.5·x / (1 + |x|) + 0.3·cos(k + 0.3·i).
fn fake_unet(x: &[f32], i: usize) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(k, &v)| v * 0.5 / (1.0 + v.abs()) + (0.3 * (k as f64 + 0.3 * i as f64).cos()) as f32)
        .collect()
}

/// The script's deterministic noise: call c (from 1) gives cos(1.3·c + 0.7·k).
struct ScriptNoise(usize);

impl Noise for ScriptNoise {
    fn fill(&mut self, out: &mut [f32]) {
        self.0 += 1;
        for (k, v) in out.iter_mut().enumerate() {
            *v = (1.3 * self.0 as f64 + 0.7 * k as f64).cos() as f32;
        }
    }
}

fn config(name: &str) -> SchedulerConfig {
    let json = CONFIGS.iter().find(|(n, _)| *n == name).unwrap().1;
    SchedulerConfig::from_json(json).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

#[test]
fn every_scheduler_matches_diffusers() {
    assert_eq!(CASES.len(), 17);
    for case in CASES {
        let what = format!("{} on {}", case.kind.name(), case.config);
        let mut scheduler = build(case.kind, &config(case.config), STEPS).unwrap();
        assert_eq!(scheduler.timesteps().len(), case.timesteps.len(), "{what}: timesteps {:?}", scheduler.timesteps());
        for (ours, theirs) in scheduler.timesteps().iter().zip(case.timesteps) {
            assert!(
                close(*ours, *theirs, 1e-5),
                "{what}: timesteps {:?} vs {:?}",
                scheduler.timesteps(),
                case.timesteps
            );
        }
        assert_eq!(scheduler.sigmas().len(), case.sigmas.len(), "{what}: sigmas");
        for (ours, theirs) in scheduler.sigmas().iter().zip(case.sigmas) {
            assert!(close(*ours, *theirs, 1e-5), "{what}: sigmas {:?} vs {:?}", scheduler.sigmas(), case.sigmas);
        }
        assert!(close(scheduler.init_noise_sigma(), case.init_noise_sigma, 1e-5), "{what}: init_noise_sigma");

        let sigma0 = scheduler.init_noise_sigma() as f32;
        let mut sample: Vec<f32> = SAMPLE.iter().map(|v| v * sigma0).collect();
        let mut noise = ScriptNoise(0);
        for i in 0..scheduler.timesteps().len() {
            let scale = scheduler.input_scale(i) as f32;
            let input: Vec<f32> = sample.iter().map(|v| v * scale).collect();
            let output = fake_unet(&input, i);
            scheduler.step(i, &output, &mut sample, &mut noise);
        }
        for (ours, theirs) in sample.iter().zip(case.final_sample) {
            assert!(
                close(*ours as f64, *theirs as f64, 2e-4),
                "{what}: final sample {sample:?} vs {:?}",
                case.final_sample
            );
        }
    }
}

#[test]
fn sd15_pndm_timesteps_match_the_reference_pipeline() {
    // The fixture reference (optimum-intel, 8 steps) ran these timesteps.
    let scheduler = build(SchedulerKind::Pndm, &config("sd15"), 8).unwrap();
    assert_eq!(scheduler.timesteps(), &[876.0, 751.0, 751.0, 626.0, 501.0, 376.0, 251.0, 126.0, 1.0]);
}

#[test]
fn step_counts_outside_the_schedule_are_refused() {
    let sd15 = config("sd15");
    assert_eq!(
        build(SchedulerKind::Ddim, &sd15, 0).err(),
        Some(SchedulerError::Steps { scheduler: "ddim", steps: 0, max: 1000 })
    );
    // LCM picks its steps from the 50-step distillation schedule.
    assert!(build(SchedulerKind::Lcm, &sd15, 50).is_ok());
    assert_eq!(
        build(SchedulerKind::Lcm, &sd15, 51).err(),
        Some(SchedulerError::Steps { scheduler: "lcm", steps: 51, max: 50 })
    );
    let prk = SchedulerConfig { skip_prk_steps: false, ..sd15 };
    assert!(matches!(build(SchedulerKind::Pndm, &prk, 10).err(), Some(SchedulerError::Unsupported(_))));
}

#[test]
fn one_step_runs_for_every_scheduler() {
    for kind in SchedulerKind::ALL {
        let mut scheduler = build(kind, &config("sd15"), 1).unwrap();
        let mut sample = vec![0.5f32; 4];
        for i in 0..scheduler.timesteps().len() {
            scheduler.step(i, &[0.1; 4], &mut sample, &mut ScriptNoise(0));
        }
        assert!(sample.iter().all(|v| v.is_finite()), "{kind:?}: {sample:?}");
    }
}

#[test]
fn names_parse_both_ways() {
    for kind in SchedulerKind::ALL {
        assert_eq!(SchedulerKind::parse(kind.name()), Some(kind));
        assert_eq!(SchedulerKind::parse(kind.a1111_name()), Some(kind));
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.name()));
        assert_eq!(serde_json::from_str::<SchedulerKind>(&json).unwrap(), kind);
    }
    assert_eq!(SchedulerKind::from_class_name("PNDMScheduler"), Some(SchedulerKind::Pndm));
    assert_eq!(SchedulerKind::from_class_name("UniPCMultistepScheduler"), None);
}

#[test]
fn numpy_helpers() {
    assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(
        (round_even(0.5), round_even(1.5), round_even(2.5), round_even(-0.5), round_even(2.4)),
        (0.0, 2.0, 2.0, 0.0, 2.0)
    );
    assert_eq!(interp_on_grid(1.25, &[0.0, 10.0, 20.0]), 12.5);
    assert_eq!(interp_on_grid(5.0, &[0.0, 10.0, 20.0]), 20.0);
    // log-sigmas 0, 1, 2: sigma e^1.5 sits halfway between timesteps 1 and 2.
    assert!((sigma_to_t(1.5f64.exp(), &[0.0, 1.0, 2.0]) - 1.5).abs() < 1e-12);
}
