//! Acknowledgements and checkpoints: nothing acknowledged is lost, nothing lost is
//! acknowledged.
//!
//! A source hands out one [`AckBatch`] per batch it reads; every record of the batch holds
//! an [`AckRef`] to it, and fan-out clones the `AckRef`. A copy is finished by
//! [`AckRef::complete`] — written by a sink, deliberately dropped, or dead-lettered. When
//! the last copy is gone the batch reports to its source's [`Checkpointer`]: *done* if
//! every copy completed, *abandoned* if any copy was dropped without completing (a task
//! that died, a shutdown that could not drain). The checkpointer advances a source's
//! position only over a contiguous run of done batches, so a position never passes a
//! record that was not safely handled (at least once: docs/architecture.md#principles).
//!
//! It does not persist anything itself: a source decides where its checkpoint lives.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use crate::doc::Doc;

/// A batch's completion, reported to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The batch's sequence number within its source (0, 1, 2, …).
    pub seq: u64,
    /// Whether every copy of every record completed.
    pub ok: bool,
}

struct Inner {
    seq: u64,
    abandoned: AtomicBool,
    tx: mpsc::UnboundedSender<Completion>,
    home: Option<Home>,
}

/// Where a source takes back its records' documents once they are written, to free them on
/// the thread that built them ([`crate::record::Returns`]).
pub type Home = mpsc::UnboundedSender<Vec<Doc>>;

impl Drop for Inner {
    fn drop(&mut self) {
        let ok = !self.abandoned.load(Ordering::Acquire);
        // The source may be gone already (shutdown); then nobody needs to know.
        let _ = self.tx.send(Completion { seq: self.seq, ok });
    }
}

/// One record copy's share of a batch acknowledgement.
#[derive(Debug)]
pub struct AckRef {
    inner: Arc<Inner>,
    completed: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckBatch").field("seq", &self.seq).finish()
    }
}

impl AckRef {
    /// Where the record's source takes its document back, if it does.
    pub fn home(&self) -> Option<&Home> {
        self.inner.home.as_ref()
    }

    /// Marks this copy as safely handled.
    pub fn complete(mut self) {
        self.completed = true;
    }

    /// An acknowledgement nobody waits for (tests, benchmarks, records made by plugins
    /// share their parent's instead).
    pub fn detached() -> AckRef {
        let (tx, _rx) = mpsc::unbounded_channel();
        AckBatch::new(0, tx).record()
    }
}

impl Clone for AckRef {
    fn clone(&self) -> Self {
        AckRef { inner: self.inner.clone(), completed: false }
    }
}

impl Drop for AckRef {
    fn drop(&mut self) {
        if !self.completed {
            self.inner.abandoned.store(true, Ordering::Release);
        }
    }
}

/// The acknowledgement of one source batch; hand each record an [`AckBatch::record`].
pub struct AckBatch {
    inner: Arc<Inner>,
}

impl AckBatch {
    /// A batch with sequence number `seq`, reporting to `tx`.
    pub fn new(seq: u64, tx: mpsc::UnboundedSender<Completion>) -> Self {
        Self::with_home(seq, tx, None)
    }

    /// A batch whose records' documents go back to `home` once written.
    pub fn returning(seq: u64, tx: mpsc::UnboundedSender<Completion>, home: Home) -> Self {
        Self::with_home(seq, tx, Some(home))
    }

    fn with_home(seq: u64, tx: mpsc::UnboundedSender<Completion>, home: Option<Home>) -> Self {
        AckBatch { inner: Arc::new(Inner { seq, abandoned: AtomicBool::new(false), tx, home }) }
    }

    /// A share for one record.
    pub fn record(&self) -> AckRef {
        AckRef { inner: self.inner.clone(), completed: false }
    }
}

/// Orders completions and says how far a source may checkpoint.
///
/// Positions are registered as batches are read (`register(seq, position)`); completions
/// arrive in any order; `advance` returns the position of the last batch of the longest
/// run of completed batches from the start, once, and forgets them.
#[derive(Debug)]
pub struct Checkpointer<P> {
    next_seq: u64,
    pending: BTreeMap<u64, (P, Option<bool>)>,
    stalled: bool,
}

impl<P> Default for Checkpointer<P> {
    fn default() -> Self {
        Checkpointer { next_seq: 0, pending: BTreeMap::new(), stalled: false }
    }
}

impl<P> Checkpointer<P> {
    /// Records that batch `seq` ends at `position`.
    pub fn register(&mut self, seq: u64, position: P) {
        self.pending.insert(seq, (position, None));
    }

    /// Records a completion.
    pub fn complete(&mut self, c: Completion) {
        if let Some(entry) = self.pending.get_mut(&c.seq) {
            entry.1 = Some(c.ok);
        }
    }

    /// The position to checkpoint now, if the contiguous completed run grew.
    /// An abandoned batch stops the run for good (the process must restart to retry it).
    pub fn advance(&mut self) -> Option<P> {
        let mut last = None;
        while !self.stalled {
            match self.pending.first_key_value() {
                Some((&seq, (_, Some(true)))) if seq == self.next_seq => {
                    let (_, (pos, _)) = self.pending.pop_first()?;
                    self.next_seq += 1;
                    last = Some(pos);
                }
                Some((&seq, (_, Some(false)))) if seq == self.next_seq => self.stalled = true,
                _ => break,
            }
        }
        last
    }

    /// Whether an abandoned batch has stopped checkpointing.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Batches registered but not yet checkpointed.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_completes_when_every_copy_completes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let batch = AckBatch::new(7, tx);
        let a = batch.record();
        let b = a.clone(); // fan-out
        drop(batch);
        a.complete();
        assert!(rx.try_recv().is_err(), "one copy is still in flight");
        b.complete();
        assert_eq!(rx.try_recv().unwrap(), Completion { seq: 7, ok: true });
    }

    #[test]
    fn a_copy_dropped_without_completing_abandons_the_batch() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let batch = AckBatch::new(1, tx);
        let a = batch.record();
        let b = batch.record();
        drop(batch);
        a.complete();
        drop(b);
        assert_eq!(rx.try_recv().unwrap(), Completion { seq: 1, ok: false });
    }

    #[test]
    fn checkpoint_advances_only_over_a_contiguous_completed_run() {
        let mut c = Checkpointer::default();
        for seq in 0..4 {
            c.register(seq, seq * 10);
        }
        c.complete(Completion { seq: 1, ok: true });
        assert_eq!(c.advance(), None, "batch 0 is still in flight");
        c.complete(Completion { seq: 0, ok: true });
        assert_eq!(c.advance(), Some(10));
        c.complete(Completion { seq: 3, ok: true });
        assert_eq!(c.advance(), None);
        c.complete(Completion { seq: 2, ok: false });
        assert_eq!(c.advance(), None);
        assert!(c.is_stalled());
    }
}
