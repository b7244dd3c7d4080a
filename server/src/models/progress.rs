//! Download progress of one model: fed by hf-hub's per-chunk callbacks, read by `/health` (through
//! a view callback) and drawn as progress bars on the command line.

use app::types::DownloadProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The rate is measured over this window, so a stall shows within seconds.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Views are refreshed at most this often (chunks arrive far more often).
const VIEW_INTERVAL: Duration = Duration::from_millis(200);

type View = Arc<dyn Fn(&DownloadProgress) + Send + Sync>;

#[derive(Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
    view: View,
    bars: Option<Bars>,
}

#[derive(Clone)]
struct Bars {
    overall: ProgressBar,
    file: ProgressBar,
}

#[derive(Default)]
struct State {
    files_total: u32,
    files_done: u32,
    bytes_total: u64,
    /// Bytes of the files already finished.
    bytes_before: u64,
    file: String,
    /// Bytes of the current file so far (a resumed file starts at what was kept).
    file_bytes: u64,
    file_size: u64,
    samples: VecDeque<(Instant, u64)>,
    last_view: Option<Instant>,
    /// The download is over: late ticks must not report it again.
    closed: bool,
}

impl State {
    fn done(&self) -> u64 {
        self.bytes_before + self.file_bytes
    }

    fn progress(&self) -> DownloadProgress {
        let rate = match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => ((b1 - b0) as f64 / (*t1 - *t0).as_secs_f64()) as u64,
            _ => 0,
        };
        let left = self.bytes_total.saturating_sub(self.done());
        DownloadProgress {
            file: self.file.clone(),
            file_bytes_done: self.file_bytes,
            file_bytes_total: self.file_size,
            files_done: self.files_done,
            files_total: self.files_total,
            bytes_done: self.done(),
            bytes_total: self.bytes_total,
            bytes_per_second: rate,
            eta_seconds: (rate > 0).then(|| left.div_ceil(rate)),
        }
    }

    fn sample(&mut self, now: Instant) {
        let done = self.done();
        self.samples.push_back((now, done));
        while self.samples.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW) {
            self.samples.pop_front();
        }
    }
}

impl Tracker {
    /// Progress reported to `view` (at most five times a second, and at every file boundary).
    pub fn new(view: impl Fn(&DownloadProgress) + Send + Sync + 'static) -> Tracker {
        Tracker { state: Arc::default(), view: Arc::new(view), bars: None }
    }

    /// Also draw a bar for the current file and one for the whole model on stderr (nothing is
    /// drawn when stderr is not a terminal).
    pub fn with_bars(mut self) -> Tracker {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = |template: &str| ProgressStyle::with_template(template).expect("valid template");
        let file = multi.add(ProgressBar::new(0));
        file.set_style(style("{msg:>32!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}"));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style("{msg:>32!} [{bar:30}] {bytes}/{total_bytes} ETA {eta}"));
        // Redrawn without new bytes too, so rate and ETA fall when the transfer stalls.
        file.enable_steady_tick(Duration::from_millis(500));
        self.bars = Some(Bars { overall, file });
        self
    }

    /// What the download will fetch (files already on disk included).
    pub fn plan(&self, files: u32, bytes: u64) {
        let mut s = self.lock();
        s.files_total = files;
        s.bytes_total = bytes;
        if let Some(bars) = &self.bars {
            bars.overall.set_length(bytes);
            bars.overall.set_message("all files");
        }
        self.show(&mut s, true);
    }

    /// A file starts downloading; its progress handle.
    pub fn start_file(&self, name: &str, size: u64) -> FileProgress {
        let mut s = self.lock();
        s.file = name.to_string();
        s.file_bytes = 0;
        s.file_size = size;
        if let Some(bars) = &self.bars {
            bars.file.set_length(size);
            bars.file.set_position(0);
            bars.file.set_message(name.to_string());
        }
        self.show(&mut s, true);
        FileProgress(self.clone())
    }

    /// A file is complete (downloaded and checked, or found intact on disk).
    pub fn finish_file(&self, size: u64) {
        let mut s = self.lock();
        s.bytes_before += size;
        s.file_bytes = 0;
        s.files_done += 1;
        self.show(&mut s, true);
    }

    /// Print a line above the bars (or on stderr when there are none).
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some(bars) if !bars.overall.is_hidden() => bars.overall.println(line),
            _ => eprintln!("{line}"),
        }
    }

    pub fn clear(&self) {
        if let Some(bars) = &self.bars {
            bars.file.finish_and_clear();
            bars.overall.finish_and_clear();
        }
    }

    /// Refresh the rate and time left though no bytes arrived, so a stalled download shows as
    /// one (call it every second or so while waiting).
    pub fn tick(&self) {
        let mut s = self.lock();
        self.show(&mut s, true);
    }

    /// No more views after this (a tick racing with the end of the download is dropped).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    pub fn progress(&self) -> DownloadProgress {
        self.lock().progress()
    }

    fn add(&self, bytes: u64) {
        let mut s = self.lock();
        s.file_bytes += bytes;
        self.show(&mut s, false);
    }

    /// A new attempt at the current file: the transfer reports again what it resumes from.
    fn restart_file(&self) {
        let mut s = self.lock();
        s.file_bytes = 0;
        self.show(&mut s, false);
    }

    fn show(&self, s: &mut State, force: bool) {
        let now = Instant::now();
        s.sample(now);
        if let Some(bars) = &self.bars {
            bars.file.set_position(s.file_bytes);
            bars.overall.set_position(s.done());
        }
        if s.closed {
            return;
        }
        if force || s.last_view.is_none_or(|t| now.duration_since(t) >= VIEW_INTERVAL) {
            s.last_view = Some(now);
            (self.view)(&s.progress());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One file's progress, as the transfer reports it.
#[derive(Clone)]
pub struct FileProgress(Tracker);

impl FileProgress {
    /// A new attempt at the file: the transfer reports again what it resumes from.
    pub fn restart(&self) {
        self.0.restart_file();
    }

    pub fn add(&self, bytes: u64) {
        self.0.add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_finished_files_and_the_current_one() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let tracker = Tracker::new(move |p| log.lock().unwrap().push(p.clone()));
        tracker.plan(2, 1000);
        let _ = tracker.start_file("a.bin", 600);
        tracker.add(250);
        assert_eq!(tracker.progress().bytes_done, 250);
        tracker.restart_file(); // a retry resumes: hf-hub reports the kept bytes again
        tracker.add(300);
        tracker.finish_file(600);
        let _ = tracker.start_file("b.json", 400);
        tracker.add(100);
        let p = tracker.progress();
        assert_eq!((p.files_done, p.files_total, p.bytes_done, p.bytes_total), (1, 2, 700, 1000));
        assert_eq!((p.file.as_str(), p.file_bytes_done, p.file_bytes_total), ("b.json", 100, 400));
        assert!((p.fraction() - 0.7).abs() < 1e-6);
        tracker.finish_file(400);
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!((last.files_done, last.bytes_done), (2, 1000));
        assert_eq!(last.eta_seconds.unwrap_or(0), 0);
    }

    #[test]
    fn a_stall_brings_the_rate_to_zero_and_close_stops_the_views() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let tracker = Tracker::new(move |p| log.lock().unwrap().push(p.clone()));
        tracker.plan(1, 1000);
        let _ = tracker.start_file("a.bin", 1000);
        tracker.add(100);
        std::thread::sleep(Duration::from_millis(20));
        tracker.add(100);
        assert!(tracker.progress().bytes_per_second > 0);
        assert!(tracker.progress().eta_seconds.is_some());
        // Samples older than the window go; with only flat ones left the rate is zero.
        tracker.lock().samples.iter_mut().for_each(|(t, _)| *t -= RATE_WINDOW * 2);
        tracker.tick();
        let p = tracker.progress();
        assert_eq!((p.bytes_per_second, p.eta_seconds), (0, None));
        let views = seen.lock().unwrap().len();
        tracker.close();
        tracker.tick();
        tracker.add(1);
        assert_eq!(seen.lock().unwrap().len(), views);
    }
}
