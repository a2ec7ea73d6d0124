//! Progress while a pipeline runs: a progress bar on an interactive terminal (when the
//! sources know how many records they will read), a log line every 10 s otherwise, and the
//! timing table every `--report-interval`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::graph::{Graph, Section};
use crate::timing::Timing;

/// How to show a run's progress.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar (an interactive terminal and a finite source).
    pub progress: bool,
    /// Print the timing table this often while running.
    pub report_interval: Option<Duration>,
}

/// The running monitor thread.
pub struct Monitor {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    /// Starts watching; `total` is the records the sources will read, when known.
    pub fn start(timing: Arc<Timing>, graph: &Graph, total: Option<u64>, opts: RunOptions) -> Monitor {
        let ids = |section| graph.nodes.iter().filter(move |n| n.section == section).map(|n| n.id.clone());
        let sources: Vec<String> = ids(Section::Source).collect();
        let sinks: Vec<String> = ids(Section::Sink).collect();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("ctrflow-monitor".into())
            .spawn(move || {
                let count = |nodes: &[String], out: bool| {
                    nodes
                        .iter()
                        .map(|s| {
                            let c = &timing.node(s).counters;
                            if out { &c.records_out } else { &c.records_in }.load(Ordering::Relaxed)
                        })
                        .sum::<u64>()
                };
                let bar = (opts.progress && total.is_some()).then(|| {
                    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} records read ({per_sec}, {eta} left) {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar
                });
                let started = Instant::now();
                let mut last_log = Instant::now();
                let mut last_report = Instant::now();
                loop {
                    match rx.recv_timeout(Duration::from_millis(200)) {
                        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    if let Some(bar) = &bar {
                        bar.set_position(count(&sources, false));
                        bar.set_message(format!("{} written", count(&sinks, true)));
                    } else if last_log.elapsed() >= Duration::from_secs(10) {
                        tracing::info!(
                            read = count(&sources, false),
                            written = count(&sinks, true),
                            elapsed_s = started.elapsed().as_secs(),
                            "Progress."
                        );
                        last_log = Instant::now();
                    }
                    if let Some(every) = opts.report_interval
                        && last_report.elapsed() >= every
                    {
                        let table = timing.report().table();
                        match &bar {
                            Some(b) => b.println(table),
                            None => eprintln!("{table}"),
                        }
                        last_report = Instant::now();
                    }
                }
                if let Some(bar) = bar {
                    bar.set_position(count(&sources, false));
                    bar.finish_and_clear();
                }
            })
            .ok();
        Monitor { stop: Some(tx), handle }
    }

    /// Stops and joins the thread.
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
