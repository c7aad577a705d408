//! A one-line progress report for long encodes, redrawn in place on stderr: texts done of the total, tokens
//! per second and the time left. Drawn only when stderr is a terminal, so logs and pipes get none of it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use llm2vec::Progress;

/// The line is redrawn at most this often.
const INTERVAL: Duration = Duration::from_millis(200);

pub struct ProgressLine {
    enabled: bool,
    start: Instant,
    drawn: Option<Instant>,
}

impl ProgressLine {
    /// A line on stderr, drawn only if stderr is a terminal.
    pub fn on_stderr() -> Self {
        Self { enabled: std::io::stderr().is_terminal(), start: Instant::now(), drawn: None }
    }

    /// Redraws the line for `p`; the last update (all texts done) ends it.
    pub fn update(&mut self, p: Progress) {
        let now = Instant::now();
        let finished = p.done == p.total;
        if !self.enabled || (!finished && self.drawn.is_some_and(|t| now - t < INTERVAL)) {
            return;
        }
        self.drawn = Some(now);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", line(&p, now - self.start));
        if finished {
            let _ = writeln!(err);
        }
    }
}

/// `12/40 texts, 1830 tokens/s, 0:15 left`; the time left comes from the token rate so far.
fn line(p: &Progress, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { p.tokens_done as f64 / secs } else { 0.0 };
    let left = if rate > 0.0 { clock((p.tokens_total - p.tokens_done) as f64 / rate) } else { "?".into() };
    format!("{}/{} texts, {rate:.0} tokens/s, {left} left", p.done, p.total)
}

/// Seconds as `m:ss`, or `h:mm:ss` from an hour on.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: usize, tokens_done: usize) -> Progress {
        Progress { done, total: 40, tokens_done, tokens_total: 4000 }
    }

    #[test]
    fn the_line_gives_counts_rate_and_time_left() {
        assert_eq!(line(&progress(10, 1000), Duration::from_secs(2)), "10/40 texts, 500 tokens/s, 0:06 left");
        assert_eq!(line(&progress(0, 0), Duration::ZERO), "0/40 texts, 0 tokens/s, ? left");
        assert_eq!(line(&progress(1, 1), Duration::from_secs(10)), "1/40 texts, 0 tokens/s, 11:06:30 left");
    }
}
