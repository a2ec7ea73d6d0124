//! The contact mix: which contacts happen and how they go, drawn from the seeded RNG. A
//! [`Plan`] says everything about one contact (channel, method, queue, agent work, timeline,
//! disconnect reason, customer, links to other contacts) without rendering it.
//!
//! The mix:
//! - channels VOICE (~65 % of records), CHAT (~25 %), TASK (~10 %), with initiation methods
//!   that fit the channel (voice INBOUND/OUTBOUND/CALLBACK plus TRANSFER legs; chat and task
//!   `API`);
//! - ~8 % of records abandoned in queue (voice and chat): no agent, `Queue.Dequeue ==
//!   Disconnect`, as in tests/fixtures/ctr/aws-samples-workshop-voice-abandoned-in-queue.json;
//! - ~10 % of answered inbound calls cold-transferred to another queue: contact A gets
//!   `NextContactId` = B, and B (`InitiationMethod: TRANSFER`) starts when A's agent leg ended;
//! - disconnect reasons per channel from the shares Connect's data model lists.
//!
//! It does not render records (see `render`), schedule when they are published or re-delivered
//! (see `synth`), or lay out timestamps (see `timeline`).

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value};

use super::attributes::Customer;
use super::catalog::{
    AGENTS_PER_TEAM, FRONT_LINE_AGENTS, Q_BACKOFFICE, Q_BILLING, Q_GENERAL, Q_RETENTION, Q_SALES, Q_TECH, QUEUES,
};
use super::ids::contact_id;
use super::random::{pick, skewed, weighted};
use super::text::str_val;
use super::timeline::{AgentWork, Spans, Times, timeline};

/// Shares of fresh contacts, in percent. Transfer legs (always voice) add ~2.5 points to voice,
/// so the share of *records* lands near the 65/25/10 the pipeline demo expects.
const PCT_VOICE: u32 = 64;
const PCT_CHAT: u32 = 26;
/// Probability that an eligible fresh contact (voice INBOUND or chat, ~77 % of fresh contacts)
/// is abandoned in queue; diluted by transfer legs this gives ~8 % of records.
const P_ABANDON: f64 = 0.11;
/// Probability that an answered inbound voice contact is cold-transferred to another queue.
const P_TRANSFER: f64 = 0.10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Channel {
    Voice,
    Chat,
    Task,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "VOICE",
            Channel::Chat => "CHAT",
            Channel::Task => "TASK",
        }
    }
}

/// Everything needed to render one CTR.
pub(super) struct Plan {
    pub id: String,
    pub channel: Channel,
    pub method: &'static str,
    /// Index into the catalog's queues.
    pub queue: usize,
    /// `None`: abandoned in queue.
    pub work: Option<AgentWork>,
    pub t: Times,
    pub disconnect_reason: &'static str,
    pub customer_phone: Option<String>,
    pub system_number: Option<&'static str>,
    pub attrs: Map<String, Value>,
    pub initial_id: Option<String>,
    pub previous_id: Option<String>,
    pub next_id: Option<String>,
    pub transfer_completed: Option<i64>,
}

/// A brand-new contact and, if it was transferred, its second leg.
pub(super) struct Fresh {
    pub plan: Plan,
    pub transfer: Option<TransferLeg>,
}

/// Leg B of a cold transfer: planned with leg A, published a few records later.
pub(super) struct TransferLeg {
    pub plan: Plan,
    /// Records to emit before B.
    pub after_records: u64,
    /// Seconds between B's completion and its publication.
    pub publish_delay: i64,
}

/// A brand-new contact published at `now` (unix seconds).
pub(super) fn fresh(rng: &mut SmallRng, now: i64) -> Fresh {
    let publish_delay = rng.random_range(0..=5);
    let last_update = now - publish_delay;
    let r = rng.random_range(0..100u32);
    let channel = if r < PCT_VOICE {
        Channel::Voice
    } else if r < PCT_VOICE + PCT_CHAT {
        Channel::Chat
    } else {
        Channel::Task
    };
    let mut plan = match channel {
        Channel::Voice => {
            let m = rng.random_range(0..100u32);
            if m < 80 {
                voice_inbound(rng, last_update)
            } else if m < 92 {
                voice_outbound(rng, last_update)
            } else {
                voice_callback(rng, last_update)
            }
        }
        Channel::Chat => chat(rng, last_update),
        Channel::Task => task(rng, last_update),
    };
    let transferable = channel == Channel::Voice && plan.method == "INBOUND" && plan.work.is_some();
    let transfer = (transferable && rng.random_bool(P_TRANSFER)).then(|| {
        let leg = transfer_leg(rng, &mut plan, now, publish_delay);
        let after_records = rng.random_range(2..=6);
        TransferLeg { plan: leg, after_records, publish_delay: rng.random_range(0..=5) }
    });
    Fresh { plan, transfer }
}

fn voice_inbound(rng: &mut SmallRng, last_update: i64) -> Plan {
    let queue = weighted(rng, &[(Q_BILLING, 25), (Q_TECH, 25), (Q_SALES, 15), (Q_RETENTION, 10), (Q_GENERAL, 25)]);
    let abandoned = rng.random_bool(P_ABANDON);
    let ivr = rng.random_range(10..=90);
    let gap = rng.random_range(5..=90);
    if abandoned {
        // The caller hung up while queued.
        let wait = skewed(rng, 5, 600);
        let t = timeline(last_update, None, Spans { gap, ring: 0, wait, pre_queue: ivr, pre_system: 0 });
        return plan(rng, Channel::Voice, "INBOUND", queue, None, t, "CUSTOMER_DISCONNECT");
    }
    let work = voice_work(rng, queue);
    let wait = skewed(rng, 0, 600);
    let ring = rng.random_range(0..=2);
    let t = timeline(last_update, Some(&work), Spans { gap, ring, wait, pre_queue: ivr, pre_system: 0 });
    let reason = voice_reason(rng);
    plan(rng, Channel::Voice, "INBOUND", queue, Some(work), t, reason)
}

fn voice_outbound(rng: &mut SmallRng, last_update: i64) -> Plan {
    // Agent-dialled sales/retention calls through the team's queue (its outbound queue).
    let queue = if rng.random_bool(0.6) { Q_SALES } else { Q_RETENTION };
    let work = voice_work(rng, queue);
    let dialing = rng.random_range(5..=30);
    let gap = rng.random_range(5..=90);
    let t = timeline(last_update, Some(&work), Spans { gap, ring: 0, wait: 0, pre_queue: 0, pre_system: dialing });
    let reason = voice_reason(rng);
    let mut p = plan(rng, Channel::Voice, "OUTBOUND", queue, Some(work), t, reason);
    p.attrs.remove("greetingPlayed");
    p
}

fn voice_callback(rng: &mut SmallRng, last_update: i64) -> Plan {
    let queue = weighted(rng, &[(Q_BILLING, 40), (Q_TECH, 40), (Q_GENERAL, 20)]);
    let work = voice_work(rng, queue);
    let wait = skewed(rng, 60, 1800);
    let pre_queue = rng.random_range(0..=2);
    let gap = rng.random_range(5..=90);
    let t = timeline(last_update, Some(&work), Spans { gap, ring: 0, wait, pre_queue, pre_system: 0 });
    let reason = voice_reason(rng);
    let mut p = plan(rng, Channel::Voice, "CALLBACK", queue, Some(work), t, reason);
    // DescribeContact documents SystemEndpoint as not populated for CALLBACK contacts.
    p.system_number = None;
    p
}

fn chat(rng: &mut SmallRng, last_update: i64) -> Plan {
    let queue = weighted(rng, &[(Q_BILLING, 30), (Q_TECH, 35), (Q_SALES, 15), (Q_GENERAL, 20)]);
    let bot = rng.random_range(5..=60);
    let gap = rng.random_range(5..=90);
    if rng.random_bool(P_ABANDON) {
        let wait = skewed(rng, 5, 300);
        let t = timeline(last_update, None, Spans { gap, ring: 0, wait, pre_queue: bot, pre_system: 0 });
        let reason = if rng.random_bool(0.8) { "CUSTOMER_DISCONNECT" } else { "CUSTOMER_CONNECTION_NOT_ESTABLISHED" };
        return plan(rng, Channel::Chat, "API", queue, None, t, reason);
    }
    let work = agent_work(rng, queue, (120, 1500), (5, 90), false);
    let wait = skewed(rng, 0, 300);
    let t = timeline(last_update, Some(&work), Spans { gap, ring: 0, wait, pre_queue: bot, pre_system: 0 });
    // The chat disconnect reasons of Connect's data model.
    let reason = match rng.random_range(0..100u32) {
        0..55 => "CUSTOMER_DISCONNECT",
        55..85 => "AGENT_DISCONNECT",
        85..95 => "IDLE_DISCONNECT",
        95..98 => "AGENT_NETWORK_DISCONNECT",
        _ => "EXPIRED",
    };
    plan(rng, Channel::Chat, "API", queue, Some(work), t, reason)
}

fn task(rng: &mut SmallRng, last_update: i64) -> Plan {
    let queue = if rng.random_bool(0.8) { Q_BACKOFFICE } else { Q_BILLING };
    let work = agent_work(rng, queue, (60, 1200), (0, 60), false);
    let wait = skewed(rng, 0, 3600);
    let gap = rng.random_range(5..=90);
    // Some tasks are created ahead of time and scheduled; they enter the queue when due.
    let scheduled = rng.random_bool(0.2);
    let pre_queue = if scheduled { rng.random_range(600..=86_400) } else { rng.random_range(0..=2) };
    let mut t = timeline(last_update, Some(&work), Spans { gap, ring: 0, wait, pre_queue, pre_system: 0 });
    if scheduled {
        t.scheduled = Some(t.enqueue);
    }
    let reason = match rng.random_range(0..100u32) {
        0..85 => "AGENT_COMPLETED",
        85..95 => "AGENT_DISCONNECT",
        _ => "API",
    };
    plan(rng, Channel::Task, "API", queue, Some(work), t, reason)
}

/// Turns `a` (an answered inbound call) into a cold transfer and returns leg B.
///
/// B starts when A's agent leg ends (Connect stamps a transferred contact's initiation with the
/// moment the prior leg ended), and both legs are published around `now`. So B is planned
/// first, ending just before `now`, and kept to a few minutes (short talk, no holds) so that
/// A's disconnect stays "a few minutes" back; A is then re-timed backwards from B's start with
/// its own durations, and its ACW shortened if needed to end before A is published.
fn transfer_leg(rng: &mut SmallRng, a: &mut Plan, now: i64, a_publish_delay: i64) -> Plan {
    let mut queue = weighted(rng, &[(Q_BILLING, 35), (Q_TECH, 35), (Q_SALES, 15), (Q_RETENTION, 15)]);
    if queue == a.queue {
        queue = if a.queue == Q_BILLING { Q_TECH } else { Q_BILLING };
    }
    let b_last = now - rng.random_range(0..=5);
    let work = agent_work(rng, queue, (30, 300), (5, 60), false);
    let wait = skewed(rng, 0, 120);
    let flow = rng.random_range(0..=5);
    let gap = rng.random_range(1..=30);
    let t = timeline(b_last, Some(&work), Spans { gap, ring: 0, wait, pre_queue: flow, pre_system: 0 });
    let reason = voice_reason(rng);
    let mut b = plan(rng, Channel::Voice, "TRANSFER", queue, Some(work), t, reason);
    // Same caller, same dialled number; attributes travel with the contact.
    b.customer_phone = a.customer_phone.clone();
    b.system_number = a.system_number;
    b.attrs = a.attrs.clone();
    b.attrs.insert("transferredFrom".into(), str_val(QUEUES[a.queue].name));
    b.attrs.insert("intent".into(), str_val(pick(rng, QUEUES[queue].intents)));
    b.initial_id = Some(a.id.clone());
    b.previous_id = Some(a.id.clone());

    let a_last = now - a_publish_delay;
    let disconnect = b.t.initiation;
    if let Some(w) = a.work.as_mut() {
        let ring = a.t.dequeue_to_agent(w);
        let wait = a.t.dequeue - a.t.enqueue;
        let pre_queue = a.t.enqueue - a.t.connected_to_system;
        // B lasts ≥ 30 s and ends ≥ 1 s before `now` − 5 s, so this is ≥ 0 in practice;
        // the clamp keeps ACW end ≤ LastUpdate regardless.
        w.acw = w.acw.min(a_last - disconnect).max(0);
        let gap = a_last - (disconnect + w.acw);
        a.t = timeline(a_last, Some(&*w), Spans { gap, ring, wait, pre_queue, pre_system: 0 });
    }
    a.disconnect_reason = "AGENT_DISCONNECT";
    a.transfer_completed = Some(disconnect);
    a.next_id = Some(b.id.clone());
    b
}

/// Agent work for a voice contact on `queue`: holds are a voice thing.
fn voice_work(rng: &mut SmallRng, queue: usize) -> AgentWork {
    agent_work(rng, queue, (30, 900), (5, 120), true)
}

/// An agent of the team that works `queue`, talking for `talk` seconds (skewed short) and
/// wrapping up for `acw` seconds (uniform), both `(lo, hi)` inclusive.
fn agent_work(rng: &mut SmallRng, queue: usize, talk: (i64, i64), acw: (i64, i64), holds: bool) -> AgentWork {
    let idx = match QUEUES[queue].team {
        Some(team) => team * AGENTS_PER_TEAM + rng.random_range(0..AGENTS_PER_TEAM),
        None => rng.random_range(0..FRONT_LINE_AGENTS),
    };
    let (mut hold, mut longest, mut n) = (0, 0, 0);
    if holds && rng.random_bool(0.3) {
        n = rng.random_range(1..=3);
        for _ in 0..n {
            let h = rng.random_range(5..=180);
            hold += h;
            longest = longest.max(h);
        }
    }
    AgentWork {
        idx,
        attempts: if rng.random_bool(0.9) { 1 } else { 2 },
        interaction: skewed(rng, talk.0, talk.1),
        hold,
        longest_hold: longest,
        holds: n,
        acw: rng.random_range(acw.0..=acw.1),
    }
}

/// The voice disconnect reasons of Connect's data model.
fn voice_reason(rng: &mut SmallRng) -> &'static str {
    match rng.random_range(0..100u32) {
        0..58 => "CUSTOMER_DISCONNECT",
        58..93 => "AGENT_DISCONNECT",
        93..96 => "THIRD_PARTY_DISCONNECT",
        96..98 => "TELECOM_PROBLEM",
        _ => "OTHER",
    }
}

/// Fills in identity, endpoints and attributes around the timing.
fn plan(
    rng: &mut SmallRng,
    channel: Channel,
    method: &'static str,
    queue: usize,
    work: Option<AgentWork>,
    t: Times,
    reason: &'static str,
) -> Plan {
    let id = contact_id(rng);
    let q = &QUEUES[queue];
    let customer = Customer::draw(rng, q);
    let customer = match channel {
        Channel::Voice => customer.voice(rng, q),
        Channel::Chat => customer.chat(rng),
        Channel::Task => customer.task(rng),
    };
    Plan {
        id,
        channel,
        method,
        queue,
        work,
        t,
        disconnect_reason: reason,
        customer_phone: customer.phone,
        system_number: customer.system_number,
        attrs: customer.attrs,
        initial_id: None,
        previous_id: None,
        next_id: None,
        transfer_completed: None,
    }
}
