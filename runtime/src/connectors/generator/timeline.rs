//! When things happen in one contact: what the agent did (durations) and the contact's moments,
//! laid out backwards from when its record is published so that they always come in the
//! order Connect's data model gives:
//! `Initiation ≤ ConnectedToSystem ≤ Queue.Enqueue ≤ Queue.Dequeue ≤ Agent.ConnectedToAgent ≤
//! Disconnect ≤ Agent.AfterContactWorkEnd ≤ LastUpdate`.
//!
//! Pure arithmetic on unix seconds: it draws no random numbers (the scenario picks the
//! durations) and writes no timestamps (see `timestamps`).

/// What the agent did with a contact; the agent's timestamps are derived from these durations.
pub(super) struct AgentWork {
    /// Index into the catalog's agents.
    pub idx: usize,
    pub attempts: u32,
    /// Talk time excluding hold (`AgentInteractionDuration`).
    pub interaction: i64,
    pub hold: i64,
    pub longest_hold: i64,
    pub holds: i64,
    /// After-contact work.
    pub acw: i64,
}

impl AgentWork {
    /// When the agent was connected, given when the contact disconnected.
    pub fn connected(&self, disconnect: i64) -> i64 {
        disconnect - self.interaction - self.hold
    }
}

/// The contact's moments, in unix seconds, already in the documented order.
pub(super) struct Times {
    pub initiation: i64,
    pub connected_to_system: i64,
    pub scheduled: Option<i64>,
    pub enqueue: i64,
    pub dequeue: i64,
    pub disconnect: i64,
    pub last_update: i64,
}

impl Times {
    /// Seconds between leaving the queue and the agent connecting (the agent's ring time).
    pub fn dequeue_to_agent(&self, w: &AgentWork) -> i64 {
        (w.connected(self.disconnect) - self.dequeue).max(0)
    }
}

/// The spans of a contact before its agent's work, in seconds; negative values count as 0.
pub(super) struct Spans {
    /// From the record being complete (ACW ended, or disconnect if no agent) to `last_update`.
    pub gap: i64,
    /// From dequeue to the agent connecting.
    pub ring: i64,
    /// In queue.
    pub wait: i64,
    /// In the flow before queueing (IVR, bot, or a scheduled task's wait).
    pub pre_queue: i64,
    /// Outbound dialling before the customer answered.
    pub pre_system: i64,
}

/// Lays the contact out backwards from its publication at `last_update`: `gap` seconds before
/// it the record was complete; before that come the agent's `work`, the ring, the queue wait,
/// the flow before queueing and, for outbound dialling, the dialling. All spans are ≥ 0, so
/// the order is guaranteed.
pub(super) fn timeline(last_update: i64, work: Option<&AgentWork>, s: Spans) -> Times {
    let end = last_update - s.gap.max(0);
    let (disconnect, dequeue) = match work {
        Some(w) => {
            let disconnect = end - w.acw;
            (disconnect, disconnect - w.interaction - w.hold - s.ring.max(0))
        }
        // Abandoned in queue: left the queue when the customer hung up (as in
        // tests/fixtures/ctr/aws-samples-workshop-voice-abandoned-in-queue.json).
        None => (end, end),
    };
    let enqueue = dequeue - s.wait.max(0);
    let connected_to_system = enqueue - s.pre_queue.max(0);
    Times {
        initiation: connected_to_system - s.pre_system.max(0),
        connected_to_system,
        scheduled: None,
        enqueue,
        dequeue,
        disconnect,
        last_update,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work() -> AgentWork {
        AgentWork { idx: 0, attempts: 1, interaction: 100, hold: 20, longest_hold: 20, holds: 1, acw: 30 }
    }

    #[test]
    fn answered_contact_is_laid_out_backwards() {
        let w = work();
        let spans = Spans { gap: 4, ring: 2, wait: 60, pre_queue: 15, pre_system: 0 };
        let t = timeline(10_000, Some(&w), spans);
        assert_eq!(t.disconnect, 10_000 - 4 - 30);
        assert_eq!(w.connected(t.disconnect), t.disconnect - 120);
        assert_eq!(t.dequeue_to_agent(&w), 2);
        assert_eq!(t.enqueue, t.dequeue - 60);
        assert_eq!(t.initiation, t.connected_to_system);
        assert_eq!(t.connected_to_system, t.enqueue - 15);
    }

    #[test]
    fn abandoned_contact_leaves_the_queue_when_it_disconnects() {
        let spans = Spans { gap: 10, ring: 0, wait: 300, pre_queue: 20, pre_system: 0 };
        let t = timeline(5_000, None, spans);
        assert_eq!((t.dequeue, t.disconnect), (4_990, 4_990));
        assert_eq!(t.enqueue, 4_690);
    }

    #[test]
    fn negative_spans_count_as_zero() {
        let spans = Spans { gap: -5, ring: -1, wait: -1, pre_queue: -1, pre_system: -1 };
        let t = timeline(100, Some(&work()), spans);
        assert_eq!(t.disconnect, 70);
        assert!(t.initiation == t.connected_to_system && t.enqueue == t.dequeue);
    }
}
