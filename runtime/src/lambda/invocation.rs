//! One invocation: hand the event's records to the running pipeline, wait until each is
//! acknowledged or dead-lettered (or the deadline), and say which record Lambda must retry
//! from.
//!
//! A record is *delivered* once its batch completed: every copy of every document written,
//! deliberately dropped, or dead-lettered. The partial batch response names the first record
//! that is not: Lambda checkpoints before the lowest sequence number reported and sends
//! everything from there again, so a record after an undelivered one is never passed over,
//! however its own delivery went (at least once; newer-wins sinks make the repeats harmless).
//!
//! It does not build or replace the pipeline ([`super::warm`]), nor log anything.

use std::time::Instant;

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use tokio::sync::mpsc;

use super::source::Work;
use super::warm::Running;

/// What became of an invocation's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Records in the event.
    pub records: usize,
    /// Records delivered (written, dropped on purpose, or dead-lettered).
    pub delivered: usize,
    /// The sequence number Lambda retries from, if a record was not delivered.
    pub retry_from: Option<String>,
    /// The deadline came first.
    pub timed_out: bool,
}

/// Where a record's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not handed to the pipeline yet, or its batch is still in flight.
    Pending,
    /// Every document of it handled.
    Delivered,
    /// A copy was dropped without being handled (the pipeline stopped under it).
    Abandoned,
}

/// The index of the first record not delivered.
pub fn first_undelivered(states: &[State]) -> Option<usize> {
    states.iter().position(|s| *s != State::Delivered)
}

/// Feeds `records` to `running` and waits for them until `deadline`.
pub async fn deliver(running: &mut Running, records: Vec<KinesisEventRecord>, deadline: Instant) -> Delivery {
    let ids: Vec<String> = records.iter().map(|r| r.kinesis.sequence_number.clone()).collect();
    let n = ids.len();
    let mut states = vec![State::Pending; n];
    let mut seqs: Vec<Option<u64>> = vec![None; n];
    let (progress, mut progress_rx) = mpsc::unbounded_channel();
    let mut feeding = running.inbox.send(Work { records, progress }).is_ok();
    let mut timed_out = false;
    let mut listening = true;
    loop {
        let settled = !feeding && states.iter().all(|s| *s != State::Pending);
        if settled || (!feeding && !listening) {
            break;
        }
        tokio::select! {
            p = progress_rx.recv(), if feeding => match p {
                Some((i, None)) => states[i] = State::Delivered,
                Some((i, Some(seq))) => {
                    seqs[i] = Some(seq);
                    if let Some(ok) = running.done.remove(&seq) {
                        states[i] = if ok { State::Delivered } else { State::Abandoned };
                    }
                }
                // Every record was sent on (or the source ended).
                None => feeding = false,
            },
            c = running.completions.recv(), if listening => match c {
                Some(c) => match seqs.iter().position(|s| *s == Some(c.seq)) {
                    Some(i) => states[i] = if c.ok { State::Delivered } else { State::Abandoned },
                    None => {
                        running.done.insert(c.seq, c.ok);
                    }
                },
                // The pipeline is gone: what is still pending stays undelivered.
                None => {
                    listening = false;
                    if !feeding {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                timed_out = true;
                break;
            }
        }
    }
    // Records never handed over are pending too; a record whose batch was never sent on
    // (the source stopped) stays pending.
    let retry_from = first_undelivered(&states).map(|i| ids[i].clone());
    let delivered = states.iter().filter(|s| **s == State::Delivered).count();
    Delivery { records: n, delivered, retry_from, timed_out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn the_first_record_not_delivered_is_reported_even_when_later_ones_were() {
        assert_eq!(first_undelivered(&[Delivered, Delivered, Pending, Delivered]), Some(2));
        assert_eq!(first_undelivered(&[Delivered, Abandoned, Pending]), Some(1));
        assert_eq!(first_undelivered(&[Delivered, Delivered]), None);
        assert_eq!(first_undelivered(&[]), None);
    }
}
