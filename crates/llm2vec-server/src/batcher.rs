//! The inference queue: tokenized inputs from every request wait here, and one dedicated thread runs them
//! through `Encoder::encode_batch` in batches bounded by a padded-token budget, grouping inputs of similar
//! length so that little of each batch is padding.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use llm2vec::tokenize::Tokenized;
use llm2vec::Encoder;
use tokio::sync::oneshot;

use crate::error::ServerError;
use crate::metrics::Metrics;

/// The fixed cost of one forward pass, in tokens' worth of time (about 46 measured for SmolLM2 on 2 CPU
/// cores). It is what makes a batch worth growing; the batches formed vary little between 10 and 160.
const FORWARD_OVERHEAD_TOKENS: usize = 64;

/// One input's embedding, or why inference failed.
pub type RowResult = Result<Vec<f32>, String>;

struct Item {
    tokens: Tokenized,
    enqueued: Instant,
    reply: oneshot::Sender<RowResult>,
}

#[derive(Default)]
struct Queue {
    /// Waiting inputs in arrival order.
    items: Vec<Item>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The queue was closed: the server is shutting down.
#[derive(Debug)]
pub struct Closed;

/// Submits inputs to the inference thread; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// The inference thread; [`Worker::stop`] lets it finish the queue and joins it.
pub struct Worker {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// Starts the inference thread.
pub fn start(
    encoder: Arc<Encoder>,
    max_batch_tokens: usize,
    metrics: Arc<Metrics>,
) -> Result<(Batcher, Worker), ServerError> {
    let shared = Arc::new(Shared::default());
    let (queue, thread_metrics) = (shared.clone(), metrics.clone());
    let thread = std::thread::Builder::new()
        .name("llm2vec-inference".into())
        .spawn(move || run(&queue, &encoder, max_batch_tokens, &thread_metrics))
        .map_err(|source| ServerError::Start { what: "inference thread", source })?;
    Ok((Batcher { shared: shared.clone(), metrics }, Worker { shared, thread }))
}

impl Batcher {
    /// Queues the inputs of one request; each receiver yields that input's row. Dropping a receiver
    /// before its batch starts drops that input's work.
    pub fn submit(&self, inputs: Vec<Tokenized>) -> Result<Vec<oneshot::Receiver<RowResult>>, Closed> {
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(Closed);
        }
        let enqueued = Instant::now();
        let receivers = inputs
            .into_iter()
            .map(|tokens| {
                let (reply, receiver) = oneshot::channel();
                queue.items.push(Item { tokens, enqueued, reply });
                receiver
            })
            .collect();
        self.metrics.set_queue_size(queue.items.len());
        drop(queue);
        self.shared.wake.notify_one();
        Ok(receivers)
    }
}

impl Worker {
    /// Refuses new inputs, lets the thread finish those queued, and waits for it.
    pub fn stop(self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        // The thread catches panics from inference, so joining cannot fail in practice.
        let _ = self.thread.join();
    }
}

fn run(shared: &Shared, encoder: &Encoder, max_batch_tokens: usize, metrics: &Metrics) {
    while let Some(batch) = next_batch(shared, max_batch_tokens, metrics) {
        run_batch(encoder, batch, metrics);
    }
}

/// Waits for inputs and takes the next batch; None once the queue is closed and empty.
fn next_batch(shared: &Shared, max_batch_tokens: usize, metrics: &Metrics) -> Option<Vec<Item>> {
    let mut queue = shared.lock();
    loop {
        let before = queue.items.len();
        queue.items.retain(|item| !item.reply.is_closed());
        metrics.add_dropped(before - queue.items.len());
        if !queue.items.is_empty() {
            break;
        }
        metrics.set_queue_size(0);
        if queue.closed {
            return None;
        }
        queue = shared.wake.wait(queue).unwrap_or_else(PoisonError::into_inner);
    }
    let lengths: Vec<usize> = queue.items.iter().map(|item| item.tokens.ids.len()).collect();
    let mut chosen = vec![false; lengths.len()];
    for i in pick(&lengths, max_batch_tokens) {
        chosen[i] = true;
    }
    let (batch, rest): (Vec<_>, Vec<_>) =
        std::mem::take(&mut queue.items).into_iter().zip(chosen).partition(|(_, c)| *c);
    queue.items = rest.into_iter().map(|(item, _)| item).collect();
    metrics.set_queue_size(queue.items.len());
    Some(batch.into_iter().map(|(item, _)| item).collect())
}

/// Runs one batch and answers each input; a failure (or a panic in the model) fails the whole batch.
fn run_batch(encoder: &Encoder, batch: Vec<Item>, metrics: &Metrics) {
    let start = Instant::now();
    batch.iter().for_each(|item| metrics.observe_queue(start - item.enqueued));
    let tokens: Vec<&Tokenized> = batch.iter().map(|item| &item.tokens).collect();
    let padded = llm2vec::batch::padded_tokens(&tokens.iter().map(|t| t.ids.len()).collect::<Vec<_>>());
    let result = catch_unwind(AssertUnwindSafe(|| encoder.encode_batch(&tokens)));
    metrics.observe_batch(batch.len(), padded, start.elapsed());
    let dim = encoder.dim();
    match result {
        Ok(Ok(rows)) if rows.len() == batch.len() * dim => {
            for (item, row) in batch.into_iter().zip(rows.chunks(dim)) {
                // A receiver dropped meanwhile (client gone) needs no answer.
                let _ = item.reply.send(Ok(row.to_vec()));
            }
        }
        Ok(Ok(rows)) => {
            let message = format!("inference returned {} values for {} rows of {dim}", rows.len(), batch.len());
            fail(batch, message);
        }
        Ok(Err(e)) => fail(batch, format!("inference failed: {e}")),
        Err(_) => fail(batch, "inference failed: the model panicked".to_string()),
    }
}

fn fail(batch: Vec<Item>, message: String) {
    for item in batch {
        let _ = item.reply.send(Err(message.clone()));
    }
}

/// Chooses the next batch among waiting inputs, given their lengths in arrival order: the oldest input (so
/// none waits forever), then its neighbours in length order, one at a time, for as long as the padded cost
/// (rows x longest row) fits in `budget` and the batch's estimated throughput (real tokens over padded
/// tokens plus the fixed cost of a forward pass) improves. Returns indices into `lengths`.
fn pick(lengths: &[usize], budget: usize) -> Vec<usize> {
    if lengths.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let sorted: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
    let anchor = order.iter().position(|&i| i == 0).unwrap_or(0);
    let mut window = Window { lo: anchor, hi: anchor, real: sorted[anchor] };
    while let Some(next) = window.best_growth(&sorted, budget) {
        window = next;
    }
    order[window.lo..=window.hi].to_vec()
}

/// A run `lo..=hi` of inputs sorted by length, with their total real tokens.
#[derive(Debug, Clone, Copy)]
struct Window {
    lo: usize,
    hi: usize,
    real: usize,
}

impl Window {
    fn padded(&self, sorted: &[usize]) -> usize {
        (self.hi - self.lo + 1) * sorted[self.hi]
    }

    fn rate(&self, sorted: &[usize]) -> f64 {
        self.real as f64 / (self.padded(sorted) + FORWARD_OVERHEAD_TOKENS) as f64
    }

    /// The window one input larger (the shorter or the longer neighbour) with the better rate, if it fits
    /// the budget and beats the current rate.
    fn best_growth(&self, sorted: &[usize], budget: usize) -> Option<Window> {
        let shorter = (self.lo > 0).then(|| Window { lo: self.lo - 1, real: self.real + sorted[self.lo - 1], ..*self });
        let longer = (self.hi + 1 < sorted.len()).then(|| Window {
            hi: self.hi + 1,
            real: self.real + sorted[self.hi + 1],
            ..*self
        });
        [shorter, longer]
            .into_iter()
            .flatten()
            .filter(|w| w.padded(sorted) <= budget && w.rate(sorted) > self.rate(sorted))
            .max_by(|a, b| a.rate(sorted).total_cmp(&b.rate(sorted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picked(lengths: &[usize], budget: usize) -> Vec<usize> {
        let mut p = pick(lengths, budget);
        p.sort_unstable();
        p
    }

    #[test]
    fn equal_lengths_fill_the_budget() {
        assert_eq!(picked(&[10; 8], 50), vec![0, 1, 2, 3, 4]);
        assert_eq!(picked(&[10; 3], 1000), vec![0, 1, 2]);
    }

    #[test]
    fn the_oldest_input_is_always_taken() {
        assert_eq!(picked(&[100, 5, 5, 5], 100), vec![0]);
        assert!(picked(&[7, 3, 9, 200, 8], 4096).contains(&0));
    }

    #[test]
    fn inputs_of_very_different_length_are_not_padded_together() {
        // A 400-token input with 10-token ones: padding them to 400 costs more than a separate pass.
        let mut lengths = vec![400];
        lengths.extend([10; 20]);
        assert_eq!(picked(&lengths, 100_000), vec![0]);
        // The next batch (the short ones) goes together.
        assert_eq!(picked(&lengths[1..], 100_000).len(), 20);
    }

    #[test]
    fn similar_lengths_are_grouped_around_the_oldest() {
        let lengths = [20, 5, 21, 6, 19, 5, 22];
        assert_eq!(picked(&lengths, 4096), vec![0, 2, 4, 6]);
    }

    #[test]
    fn a_single_input_over_budget_still_runs_alone() {
        assert_eq!(picked(&[600, 10], 512), vec![0]);
        assert!(pick(&[], 512).is_empty());
    }
}
