//! duet-load: a load check for a running Duet server.
//!
//! `chat` mode: N chat sessions at once, each a user who sends a message, reads the reply (plain
//! JSON or streamed), pauses, and sends the next, continuing the same conversation for a few
//! turns. Prints latency percentiles, time to first token for streams, throughput and responses
//! by status. `share` mode: time to first token of a streamed reply with and without an image
//! job rendering at the same time (how well chat and images share the CPU).

mod report;

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use report::{Report, Sample};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    mode: Mode,
    /// Chat sessions running at once.
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Mean pause between a reply and the next message (0: send again at once).
    #[arg(long, default_value_t = 1000)]
    think_ms: u64,
    /// Share of requests that stream, 0 to 1.
    #[arg(long, default_value_t = 0.5)]
    stream_share: f64,
    /// Turns per conversation before a session starts a new one.
    #[arg(long, default_value_t = 8)]
    turns: usize,
    /// `max_tokens` for each reply (default: the server's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// share mode: replies timed in each condition.
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// share mode: the image job's side and steps.
    #[arg(long, default_value_t = 512)]
    image_side: u32,
    #[arg(long, default_value_t = 20)]
    image_steps: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Chat,
    Share,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.sessions.max(1)).build().expect("HTTP client");
    if let Err(err) = health(&client, &args.url).await {
        eprintln!("error: no Duet server at {}: {err}", args.url);
        std::process::exit(2);
    }
    match args.mode {
        Mode::Chat => chat_load(client, args).await,
        Mode::Share => share(client, args).await,
    }
}

async fn health(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let res = client.get(format!("{url}/health")).send().await.map_err(|e| e.to_string())?;
    res.json().await.map_err(|e| e.to_string())
}

async fn chat_load(client: reqwest::Client, args: Args) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for session in 0..args.sessions {
        let (client, args) = (client.clone(), args.clone());
        tasks.push(tokio::spawn(async move { run_session(session, client, args, deadline).await }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.expect("session task"));
    }
    let report = Report::new(&samples, started.elapsed());
    if args.json {
        println!("{}", report.json(args_json(&args)));
    } else {
        println!(
            "{} sessions for {} s, think time {} ms, {:.0}% streamed, {} turns per conversation",
            args.sessions,
            args.duration,
            args.think_ms,
            args.stream_share * 100.0,
            args.turns
        );
        print!("{}", report.table());
    }
}

fn args_json(args: &Args) -> Value {
    json!({"sessions": args.sessions, "duration_s": args.duration, "think_ms": args.think_ms,
           "stream_share": args.stream_share, "turns": args.turns})
}

/// A tiny deterministic generator, so runs are comparable (no shared RNG between sessions).
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn run_session(session: usize, client: reqwest::Client, args: Args, deadline: Instant) -> Vec<Sample> {
    let mut rng = Lcg(session as u64 + 1);
    let mut samples = Vec::new();
    let mut conversation: Option<String> = None;
    let mut turn = 0;
    // Spread the first requests over one think time, as users arrive at different moments.
    tokio::time::sleep(Duration::from_millis((args.think_ms as f64 * rng.next_f64()) as u64)).await;
    while Instant::now() < deadline {
        let stream = rng.next_f64() < args.stream_share;
        let mut body = json!({"user_id": format!("load-{session}"), "message": format!("Tell me about load test turn {turn}."), "stream": stream});
        if let Some(id) = &conversation {
            body["conversation_id"] = json!(id);
        }
        if let Some(max) = args.max_tokens {
            body["max_tokens"] = json!(max);
        }
        let sample = send_chat(&client, &args.url, &body, stream).await;
        conversation = match (&sample.conversation_id, turn + 1 < args.turns) {
            (Some(id), true) => Some(id.clone()),
            _ => None,
        };
        turn = if conversation.is_some() { turn + 1 } else { 0 };
        samples.push(sample);
        let pause = args.think_ms as f64 * (0.5 + rng.next_f64());
        tokio::time::sleep(Duration::from_millis(pause as u64)).await;
    }
    samples
}

/// One `POST /chat`; for a stream, the time to its first token too.
async fn send_chat(client: &reqwest::Client, url: &str, body: &Value, stream: bool) -> Sample {
    let t = Instant::now();
    let mut sample = Sample {
        stream,
        status: 0,
        latency_ms: 0.0,
        ttft_ms: None,
        wait_ms: None,
        queued: false,
        conversation_id: None,
        error: None,
    };
    let res = match client.post(format!("{url}/chat")).json(body).send().await {
        Ok(res) => res,
        Err(err) => {
            sample.error = Some(err.to_string());
            sample.latency_ms = ms(t);
            return sample;
        }
    };
    sample.status = res.status().as_u16();
    if !stream || !res.status().is_success() {
        let json: Option<Value> = res.json().await.ok();
        sample.latency_ms = ms(t);
        sample.conversation_id = json.and_then(|j| j["conversation_id"].as_str().map(String::from));
        return sample;
    }
    let mut bytes = res.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = bytes.next().await {
        match chunk {
            Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(err) => {
                sample.error = Some(err.to_string());
                break;
            }
        }
        // The first token is the first text, or the end of the reply when that token ended it
        // (a reply may be empty, e.g. a random-weight benchmark model emitting end-of-sequence).
        let first = ["event: reasoning", "event: answer", "event: reply"].iter().any(|e| text.contains(e));
        if sample.ttft_ms.is_none() && first {
            sample.ttft_ms = Some(ms(t));
        }
        if sample.wait_ms.is_none() && text.contains("event: start") {
            sample.wait_ms = Some(ms(t));
            sample.queued = text.contains("event: queued");
        }
        if sample.conversation_id.is_none() {
            sample.conversation_id = conversation_of(&text);
        }
    }
    sample.latency_ms = ms(t);
    if !text.contains("event: done") && sample.error.is_none() {
        sample.error = Some("the stream ended without a done event".into());
    }
    sample
}

fn conversation_of(sse: &str) -> Option<String> {
    let start = sse.find("\"conversation_id\":\"")? + "\"conversation_id\":\"".len();
    let end = sse[start..].find('"')?;
    Some(sse[start..start + end].to_string())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Streamed replies timed alone, then while an image renders.
async fn share(client: reqwest::Client, args: Args) {
    let body = |i: usize| {
        let mut b = json!({"user_id": "share", "message": format!("Say hello, attempt {i}."), "stream": true, "temperature": 0});
        b["max_tokens"] = json!(args.max_tokens.unwrap_or(16));
        b
    };
    let mut alone = Vec::new();
    for i in 0..args.samples {
        alone.push(send_chat(&client, &args.url, &body(i), true).await);
    }
    let image = json!({"prompt": "a lighthouse at dusk", "num_inference_steps": args.image_steps,
                       "width": args.image_side, "height": args.image_side, "seed": 1});
    let job: Value = client
        .post(format!("{}/image", args.url))
        .json(&image)
        .send()
        .await
        .expect("POST /image")
        .json()
        .await
        .expect("job JSON");
    let status_url = format!("{}{}", args.url, job["status_url"].as_str().expect("status_url"));
    // Wait until the image is past its first step, so it is really rendering.
    loop {
        let j: Value = client.get(&status_url).send().await.expect("GET job").json().await.expect("job JSON");
        if j["step"].as_u64().unwrap_or(0) >= 1 || j["status"] != "queued" && j["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut during = Vec::new();
    for i in 0..args.samples {
        during.push(send_chat(&client, &args.url, &body(100 + i), true).await);
    }
    let j: Value = client.get(&status_url).send().await.expect("GET job").json().await.expect("job JSON");
    let still_running = j["status"] == "running";
    let _ = client.delete(&status_url).send().await;
    let ttft = |s: &[Sample]| s.iter().filter_map(|s| s.ttft_ms).collect::<Vec<_>>();
    let (a, d) = (ttft(&alone), ttft(&during));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let result = json!({"ttft_alone_ms": a, "ttft_during_image_ms": d, "mean_alone_ms": mean(&a),
                        "mean_during_image_ms": mean(&d), "ratio": mean(&d) / mean(&a).max(1e-9),
                        "image_still_running_after": still_running});
    if args.json {
        println!("{result}");
    } else {
        println!("time to first token, streamed reply ({} samples each)", args.samples);
        println!("  alone:                 {:>9.1} ms  {a:.0?}", mean(&a));
        println!("  while an image renders:{:>9.1} ms  {d:.0?}", mean(&d));
        println!(
            "  ratio {:.2}; the image was {} when the last reply ended",
            mean(&d) / mean(&a).max(1e-9),
            if still_running { "still rendering" } else { "already finished (make it bigger)" }
        );
    }
}
