//! `server imagine` and `server bench sd` through the binary, on the fixture pipeline.

mod common;

use common::run_server as server;

fn model() -> String {
    common::fixture(common::SD_FIXTURE).to_str().unwrap().to_string()
}

#[test]
fn imagine_writes_the_same_png_for_a_seed_and_remakes_it_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let base = ["imagine", "--model", &model(), "--prompt", "a lighthouse at dusk", "--steps", "3"];
    let size = ["--width", "256", "--height", "264", "--seed", "2024", "--scheduler", "Euler a"];
    let (code, out, err) = server(&[&base[..], &size[..], &["--out", &path("a.png"), "--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["seed"], 2024);
    assert_eq!(line["path"], path("a.png"));
    assert!(line["total_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["request"]["scheduler"], "euler_a");

    let (code, _, err) = server(&[&base[..], &size[..], &["--out", &path("b.png")]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("step 3/3"), "progress on stderr: {err}");
    let a = std::fs::read(path("a.png")).unwrap();
    assert_eq!(a, std::fs::read(path("b.png")).unwrap(), "same seed, same bytes");

    let (code, _, err) = server(&["imagine", "--model", &model(), "--from", &path("a.png"), "--out", &path("c.png")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(a, std::fs::read(path("c.png")).unwrap(), "the PNG's recipe remakes it");
}

#[test]
fn the_recipe_records_the_precision_and_from_remakes_it_at_that_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let here = server::inference::cpu::CpuClass::detect().name();
    let base = [
        "imagine",
        "--model",
        &model(),
        "--prompt",
        "a red fox",
        "--steps",
        "2",
        "--seed",
        "7",
        "--width",
        "256",
        "--height",
        "256",
    ];
    for (precision, recorded) in [("f32", "f32".to_string()), ("fast", format!("fast/{here}"))] {
        let drawn = path(&format!("{precision}.png"));
        let (code, _, err) = server(&[&base[..], &["--sd-precision", precision, "--out", &drawn]].concat());
        assert_eq!(code, 0, "{err}");
        let bytes = std::fs::read(&drawn).unwrap();
        let at = server::inference::diffusion::image_file::read_precision(&bytes).unwrap();
        assert_eq!(at.as_deref(), Some(recorded.as_str()));
        // Remade under the other precision's setting: the recipe's precision wins.
        let other = if precision == "f32" { "fast" } else { "f32" };
        let again = path(&format!("{precision}-again.png"));
        let (code, _, err) =
            server(&["imagine", "--model", &model(), "--sd-precision", other, "--from", &drawn, "--out", &again]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(bytes, std::fs::read(&again).unwrap(), "{precision}: the same bytes at the recorded precision");
    }
}

#[test]
fn imagine_refuses_bad_values_by_name() {
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("x.png");
    let png = png.to_str().unwrap();
    for (flag, value, says) in [
        ("--width", "300", "multiple of 8"),
        ("--steps", "0", "from 1 to 100"),
        ("--scheduler", "heun", "pndm, ddim, euler, euler_a, dpmpp_2m_karras, lcm"),
    ] {
        let (code, _, err) = server(&["imagine", "--model", &model(), "--prompt", "x", flag, value, "--out", png]);
        assert_ne!(code, 0);
        assert!(err.contains(flag) && err.contains(says), "{flag}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.path().join("x.png").exists());
}

#[test]
fn bench_sd_prints_one_json_line() {
    let (code, out, err) = server(&[
        "bench",
        "sd",
        "--model",
        &model(),
        "--width",
        "256",
        "--height",
        "256",
        "--steps",
        "2",
        "--runs",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    for key in ["total_ms", "unet_step_ms", "text_encode_ms", "vae_ms", "load_ms", "peak_rss_mb"] {
        assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {line}");
    }
    assert_eq!(line["unet_runs"], 3, "PNDM runs the UNet once more than its steps");
}
