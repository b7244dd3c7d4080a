//! The `server` binary: bad configuration stops it with a message naming the variable, and the
//! start-up log shows the configuration with secrets masked.

mod common;

use std::process::{Command, Output};

fn server(envs: &[(&str, &str)]) -> Output {
    server_in(&common::repo_root(), envs)
}

fn server_in(dir: &std::path::Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.current_dir(dir);
    // Start from a clean slate so the developer's own variables do not leak in.
    for var in [
        "USE_MOCKS",
        "LLM_MODEL",
        "SD_MODEL",
        "DATABASE_URL",
        "DATA_DIR",
        "MODELS_DIR",
        "LEPTOS_SITE_ADDR",
        "HUGGINGFACE_TOKEN",
        "OPENVINO_LIB_DIR",
        "AUTO_DOWNLOAD_MODELS",
        "LOG_FORMAT",
        "RUST_LOG",
        "DEVICE",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "LLM_REVISION",
        "SD_REVISION",
        "LLM_ATTENTION",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied()).output().expect("run the server binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_values_name_the_variable_and_exit_non_zero() {
    let cases = [
        ("USE_MOCKS", "maybe", "USE_MOCKS: expected true or false"),
        ("AUTO_DOWNLOAD_MODELS", "sometimes", "AUTO_DOWNLOAD_MODELS: expected true or false"),
        ("LLM_MODEL", "not a repo", "LLM_MODEL:"),
        ("SD_MODEL", "/no/such/folder", "SD_MODEL: no directory at /no/such/folder"),
        ("DATABASE_URL", "mysql://db/duet", "DATABASE_URL must start with sqlite: "),
        ("LEPTOS_SITE_ADDR", "localhost", "LEPTOS_SITE_ADDR: expected IP:PORT"),
        ("HF_ENDPOINT", "huggingface.co", "HF_ENDPOINT: expected an http:// or https:// address"),
        ("HF_HUB_OFFLINE", "perhaps", "HF_HUB_OFFLINE: expected true or false"),
        ("DEVICE", "TPU", "possible values: CPU, GPU, NPU, AUTO"),
        ("LOG_FORMAT", "xml", "possible values: pretty, json"),
        ("LLM_ATTENTION", "flash", "possible values: auto, paged, stateful"),
    ];
    for (var, value, expected) in cases {
        let out = server(&[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{var}={value}: {}", stderr(&out));
    }
}

#[test]
fn a_dot_env_file_is_read_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "USE_MOCKS=perhaps\nLOG_FORMAT=json\n").unwrap();
    let out = server_in(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("USE_MOCKS: expected true or false"), "{}", stderr(&out));
    // A variable set in the environment is not overridden by .env.
    let out = server_in(dir.path(), &[("USE_MOCKS", "true"), ("LOG_FORMAT", "xml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'xml'") && !stderr(&out).contains("perhaps"), "{}", stderr(&out));
}

#[test]
fn an_openvino_lib_dir_without_the_library_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = server(&[
        ("OPENVINO_LIB_DIR", dir.path().to_str().unwrap()),
        ("DATA_DIR", data.to_str().unwrap()),
        ("RUST_LOG", "warn"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // After the start-up log (quiet here), the error is one line saying what is wrong.
    let errors: Vec<_> = err.lines().filter(|l| l.starts_with("error:")).collect();
    let expected = format!("error: OPENVINO_LIB_DIR={}: no libopenvino_c.so* in that folder", dir.path().display());
    assert_eq!(errors, vec![expected.as_str()], "{err}");
    assert_eq!(err.lines().last(), Some(expected.as_str()));
    assert!(!data.exists(), "nothing is created before the runtime is found");
}

#[test]
fn startup_log_lists_the_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    // Hold the port so the server stops right after logging its configuration.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = dir.path().to_str().unwrap();
    let out = server(&[
        ("USE_MOCKS", "true"),
        ("DATA_DIR", data),
        ("LEPTOS_SITE_ADDR", &addr),
        ("HUGGINGFACE_TOKEN", "hf_topsecret"),
        ("DATABASE_URL", &format!("sqlite://{data}/duet.db")),
        ("LOG_FORMAT", "json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // Logs go to stderr; stdout stays free for the tools' results.
    assert!(out.stdout.is_empty());
    let log = stderr(&out);
    assert!(!log.contains("hf_topsecret"));
    assert!(log.contains("config HUGGINGFACE_TOKEN=***"), "{log}");
    assert!(log.contains("config USE_MOCKS=true"), "{log}");
    // Every log line is JSON; the last line is the error that stopped the server.
    let (last, logs) = log.trim_end().lines().collect::<Vec<_>>().split_last().map(|(l, r)| (*l, r.to_vec())).unwrap();
    for line in logs {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert_eq!(last, format!("error: could not listen on {addr}: Address already in use (os error 98)"));
}

#[test]
fn a_block_list_that_cannot_be_used_stops_the_server_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocklist.txt");
    std::fs::write(&list, "# fine\ngore\nre:(unclosed\n").unwrap();
    let data = dir.path().to_str().unwrap();
    let db = format!("sqlite://{data}/duet.db");
    let envs = [("USE_MOCKS", "true"), ("DATA_DIR", data), ("DATABASE_URL", &db), ("LEPTOS_SITE_ADDR", "127.0.0.1:0")];
    let out = server(&[&envs[..], &[("IMAGE_PROMPT_BLOCKLIST", list.to_str().unwrap())]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).trim_end().lines().last().unwrap_or_default().to_string();
    assert!(last.contains("IMAGE_PROMPT_BLOCKLIST") && last.contains("line 3: \"re:(unclosed\""), "{last}");
    let out = server(&[&envs[..], &[("IMAGE_PROMPT_BLOCKLIST", "/no/such/list")]].concat());
    assert!(stderr(&out).contains("IMAGE_PROMPT_BLOCKLIST: cannot read /no/such/list"), "{}", stderr(&out));
}
