//! Synthetic Amazon Connect contact trace records (CTRs) for the generator connector.
//!
//! [`Synth`] produces an endless, seeded stream of CTRs shaped like the ones Connect publishes
//! to Kinesis, as `serde_json::Value`s whose top-level keys are a superset of the real sample
//! `shared/fixtures/ctr/kyopark-voice-inbound-update-v1.json`. Facts below cite
//! `shared/reference/ctr-data-model.md` ("data model §n").
//!
//! What it generates:
//! - channels VOICE (~65 % of records), CHAT (~25 %), TASK (~10 %), with initiation methods that
//!   fit the channel (voice INBOUND/OUTBOUND/CALLBACK, plus TRANSFER legs; chat and task `API`,
//!   data model §5.2);
//! - ~8 % of records abandoned in queue (voice and chat): `Agent: null`,
//!   `AgentConnectionAttempts: 0`, `Queue.DequeueTimestamp == DisconnectTimestamp`,
//!   `Recording`/`Recordings` null, as in the real abandoned sample (data model §3, sample F3);
//! - cold transfers between queues: contact A carries `NextContactId` = B, and B, emitted a few
//!   records later, has `InitiationMethod: "TRANSFER"` and `PreviousContactId` =
//!   `InitialContactId` = A (data model §1, "a transfer results in a new contact record");
//! - re-deliveries: ~10 % of contacts are published again 5–300 records later with the same
//!   `ContactId`, a strictly newer `LastUpdateTimestamp` and changed/added `Attributes`, and
//!   nothing else changed — exactly the difference between the real kyopark v1/v2/v3 deliveries
//!   (data model §1); ~1 % are re-delivered a second time. (The real v2 arrived six days after
//!   v1; here re-deliveries come within seconds, so dedup windows get exercised at demo speed.)
//!   Transfer legs B get their own ~10 % re-deliveries;
//! - 6 queues, the 40 agents of [`Synth::agents`] with ARNs, a 3-level hierarchy
//!   (organisation / site / team; Level4–5 null) and routing profiles, fake customer PII in the
//!   attributes (`customerName`, `accountNumber`, `customerEmail` for chats), S3 call recordings
//!   at the path layout of the real samples.
//!
//! Every timestamp is placed relative to the `now` passed to [`Synth::next_record`]: the record
//! is "published" at `now`, so `LastUpdateTimestamp` = `now` − 0..5 s (re-deliveries: also at
//! least 1 s after the previous version) and the contact ended a few seconds to a few minutes
//! before that (a transferred leg A ended when leg B started, up to ~10 minutes back).
//! Timestamps are UTC, second precision, `yyyy-mm-ddThh:mm:ssZ` (data model §6) and always
//! ordered `Initiation ≤ ConnectedToSystem ≤ Queue.Enqueue ≤ Queue.Dequeue ≤
//! Agent.ConnectedToAgent ≤ Disconnect ≤ Agent.AfterContactWorkEnd ≤ LastUpdate`;
//! `Queue.Duration` = Dequeue − Enqueue and `AgentInteractionDuration + CustomerHoldDuration` =
//! Disconnect − ConnectedToAgent.
//!
//! What it deliberately does not generate (so consumers must not infer these are impossible):
//! - the EMAIL channel, QUEUE_TRANSFER / MONITOR / DISCONNECT / EXTERNAL_OUTBOUND methods,
//!   transfer chains longer than one hop, transfers out of Connect (`TransferredToEndpoint` is
//!   always null — in the real kyopark sample such a transfer puts Disconnect *after* ACW end,
//!   which would break the ordering above);
//! - unanswered outbound calls, outbound campaigns / answering-machine detection, Contact Lens,
//!   Voice ID, `References` entries, task `ContactDetails`;
//! - real OUTBOUND/CALLBACK timing: Connect stamps `ConnectedToSystemTimestamp` when the customer
//!   answers, which for callbacks comes *after* the agent is connected (data model §2); here
//!   those contacts follow the simple chain above instead;
//! - exact duplicate deliveries (same bytes twice, data model §1, sample F5) and anything about
//!   transport framing (KPL aggregation, newline delimiters) — those belong to the connector or a
//!   fault injector, not to the record content;
//! - a stable sequence across `rand` versions or 32/64-bit targets: the RNG is `SmallRng`, so
//!   "same seed, same records" holds for one build, not across dependency upgrades.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// One agent the generator routes contacts to: `(username, full name, team, site)`.
pub type AgentRow = (&'static str, &'static str, &'static str, &'static str);

/// Fixed fake deployment: like the anonymised account of the kyopark sample, not a real one.
const ACCOUNT_ID: &str = "123456789012";
const REGION: &str = "us-east-1";
/// `<bucket>/connect/<instance alias>/CallRecordings/` — the layout of the real samples' S3
/// recording locations (data model §3).
const RECORDING_PREFIX: &str = "amazon-connect-5f1e0c2a9b7d/connect/ctrflow-demo/CallRecordings/";
/// Claimed numbers of the instance (SystemEndpoint of voice contacts).
const SYSTEM_NUMBERS: [&str; 3] = ["+18005550100", "+18005550123", "+18885550199"];

/// Teams, in the order of the blocks of 8 agents in [`AGENTS`]. Index = team id.
const TEAMS: [&str; 5] = ["Billing", "Tech Support", "Sales", "Retention", "Back Office"];
const AGENTS_PER_TEAM: usize = 8;
/// Agents of the four front-line teams (the first 32) take general queue traffic.
const FRONT_LINE_AGENTS: usize = 32;

/// The agents, seed-independent so the lookup CSV (`pipelines/data/agents.csv`) never changes.
/// Blocks of 8 per team, in the order of [`TEAMS`].
static AGENTS: [AgentRow; 40] = [
    ("agent001", "Olivia Bennett", TEAMS[0], "Seattle"),
    ("agent002", "Marcus Reyes", TEAMS[0], "Seattle"),
    ("agent003", "Priya Natarajan", TEAMS[0], "Seattle"),
    ("agent004", "Daniel Okafor", TEAMS[0], "Austin"),
    ("agent005", "Sofia Lindqvist", TEAMS[0], "Austin"),
    ("agent006", "James Whitaker", TEAMS[0], "Austin"),
    ("agent007", "Aisha Rahman", TEAMS[0], "Dublin"),
    ("agent008", "Tomas Herrera", TEAMS[0], "Dublin"),
    ("agent009", "Ethan Caldwell", TEAMS[1], "Seattle"),
    ("agent010", "Mei Chen", TEAMS[1], "Seattle"),
    ("agent011", "Lucas Moreau", TEAMS[1], "Seattle"),
    ("agent012", "Grace Adeyemi", TEAMS[1], "Austin"),
    ("agent013", "Noah Fischer", TEAMS[1], "Austin"),
    ("agent014", "Hannah Kowalski", TEAMS[1], "Austin"),
    ("agent015", "Ravi Shankar", TEAMS[1], "Dublin"),
    ("agent016", "Chloe Dubois", TEAMS[1], "Dublin"),
    ("agent017", "Liam O'Connor", TEAMS[2], "Seattle"),
    ("agent018", "Zara Hussain", TEAMS[2], "Seattle"),
    ("agent019", "Benjamin Clarke", TEAMS[2], "Seattle"),
    ("agent020", "Yuki Tanaka", TEAMS[2], "Austin"),
    ("agent021", "Mateo Silva", TEAMS[2], "Austin"),
    ("agent022", "Emma Johansson", TEAMS[2], "Austin"),
    ("agent023", "Kwame Mensah", TEAMS[2], "Dublin"),
    ("agent024", "Isabella Rossi", TEAMS[2], "Dublin"),
    ("agent025", "Oscar Nilsson", TEAMS[3], "Seattle"),
    ("agent026", "Fatima Zahra", TEAMS[3], "Seattle"),
    ("agent027", "Henry Walsh", TEAMS[3], "Seattle"),
    ("agent028", "Ananya Iyer", TEAMS[3], "Austin"),
    ("agent029", "Samuel Brooks", TEAMS[3], "Austin"),
    ("agent030", "Leah Goldberg", TEAMS[3], "Austin"),
    ("agent031", "Diego Alvarez", TEAMS[3], "Dublin"),
    ("agent032", "Nora Kelly", TEAMS[3], "Dublin"),
    ("agent033", "William Hart", TEAMS[4], "Seattle"),
    ("agent034", "Amara Obi", TEAMS[4], "Seattle"),
    ("agent035", "Jack Turner", TEAMS[4], "Seattle"),
    ("agent036", "Lena Vogel", TEAMS[4], "Austin"),
    ("agent037", "Ryan Murphy", TEAMS[4], "Austin"),
    ("agent038", "Sakura Ito", TEAMS[4], "Austin"),
    ("agent039", "Ahmed Farouk", TEAMS[4], "Dublin"),
    ("agent040", "Claire Martin", TEAMS[4], "Dublin"),
];

/// Queues: (name, team that works it — `None` = any front-line agent, intents callers state).
const QUEUES: [(&str, Option<usize>, &[&str]); 6] = [
    ("Billing", Some(0), &["PayBill", "DisputeCharge", "UpdatePaymentMethod", "RefundStatus"]),
    ("TechSupport", Some(1), &["ResetPassword", "ServiceOutage", "DeviceSetup", "SlowConnection"]),
    ("Sales", Some(2), &["NewPlan", "Upgrade", "AddLine"]),
    ("Retention", Some(3), &["CancelService", "PriceMatch"]),
    ("GeneralEnquiries", None, &["CheckBalance", "StoreHours", "ChangeAddress", "Other"]),
    ("BackOffice", Some(4), &["ProcessRefund", "VerifyDocuments", "AddressChange"]),
];
const Q_BILLING: usize = 0;
const Q_TECH: usize = 1;
const Q_SALES: usize = 2;
const Q_RETENTION: usize = 3;
const Q_GENERAL: usize = 4;
const Q_BACKOFFICE: usize = 5;

const FIRST_NAMES: [&str; 20] = [
    "Alice", "Bruno", "Carmen", "Deepak", "Elena", "Farid", "Gwen", "Hiro", "Ines", "Jonas", "Keiko", "Luis", "Maya",
    "Nikolai", "Omar", "Paula", "Quinn", "Rosa", "Stefan", "Tara",
];
const LAST_NAMES: [&str; 20] = [
    "Anderson",
    "Baker",
    "Castillo",
    "Dimitrov",
    "Evans",
    "Fernandes",
    "Garcia",
    "Hoffmann",
    "Ibrahim",
    "Jensen",
    "Kim",
    "Lopez",
    "Mueller",
    "Nguyen",
    "Olsen",
    "Patel",
    "Quiroga",
    "Rossi",
    "Schmidt",
    "Thompson",
];

/// Shares of fresh contacts, in percent. Transfer legs (always voice) add ~2.5 points to voice,
/// so the share of *records* lands near the 65/25/10 the pipeline demo expects.
const PCT_VOICE: u32 = 64;
const PCT_CHAT: u32 = 26;
/// Probability that an eligible fresh contact (voice INBOUND or chat, ~77 % of fresh contacts)
/// is abandoned in queue; diluted by transfer legs this gives ~8 % of records.
const P_ABANDON: f64 = 0.11;
/// Probability that an answered inbound voice contact is cold-transferred to another queue.
const P_TRANSFER: f64 = 0.10;
/// Probability that a published contact is re-delivered (and, once re-delivered, again).
const P_REDELIVER: f64 = 0.10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Channel {
    Voice,
    Chat,
    Task,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "VOICE",
            Channel::Chat => "CHAT",
            Channel::Task => "TASK",
        }
    }
}

/// What the agent did with a contact; the timestamps are derived from these durations.
struct AgentWork {
    idx: usize,
    attempts: u32,
    /// Talk time excluding hold (data model §3 `AgentInteractionDuration`).
    interaction: i64,
    hold: i64,
    longest_hold: i64,
    holds: i64,
    acw: i64,
}

/// The contact's moments, in unix seconds, already in the documented order.
struct Times {
    initiation: i64,
    connected_to_system: i64,
    scheduled: Option<i64>,
    enqueue: i64,
    dequeue: i64,
    disconnect: i64,
    last_update: i64,
}

/// Everything needed to render one CTR.
struct Plan {
    id: String,
    channel: Channel,
    method: &'static str,
    queue: usize,
    work: Option<AgentWork>,
    t: Times,
    disconnect_reason: &'static str,
    customer_phone: Option<String>,
    system_number: Option<&'static str>,
    attrs: Map<String, Value>,
    initial_id: Option<String>,
    previous_id: Option<String>,
    next_id: Option<String>,
    transfer_completed: Option<i64>,
}

enum PendingKind {
    /// The second leg of a transfer, rendered when the first leg was; published later.
    TransferLeg { publish_delay: i64 },
    /// A re-delivery of an already published record; `round` 1 or 2.
    Redelivery { round: u8 },
}

/// A record scheduled for a later call of `next_record`.
struct Pending {
    due: u64,
    seq: u64,
    record: Value,
    last_update: i64,
    kind: PendingKind,
}

/// Seeded generator of realistic Amazon Connect contact trace records (see the module docs).
pub struct Synth {
    rng: SmallRng,
    /// Records returned so far; the index of the next record.
    emitted: u64,
    /// Tie-breaker so pending records due at the same index come out in scheduling order.
    seq: u64,
    pending: Vec<Pending>,
    instance_arn: String,
    queue_arns: Vec<String>,
    /// Per agent (index as in [`AGENTS`]): the seed-independent part of the `Agent` object.
    agent_static: Vec<AgentStatic>,
}

/// The parts of an `Agent` object that never change for an agent.
struct AgentStatic {
    arn: String,
    username: &'static str,
    hierarchy: Value,
    routing_profile: Value,
}

impl Synth {
    /// Same seed, same sequence of records (given the same `now` values).
    pub fn new(seed: u64) -> Self {
        let instance_id = fixed_uuid("instance");
        let instance_arn = format!("arn:aws:connect:{REGION}:{ACCOUNT_ID}:instance/{instance_id}");
        let queue_arns =
            QUEUES.iter().map(|(name, _, _)| format!("{instance_arn}/queue/{}", fixed_uuid(name))).collect();
        let group = |path: &str, name: &str| {
            obj([
                ("ARN", Value::String(format!("{instance_arn}/agent-group/{}", fixed_uuid(path)))),
                ("GroupName", str_val(name)),
            ])
        };
        let agent_static = AGENTS
            .iter()
            .map(|&(username, _, team, site)| AgentStatic {
                arn: format!("{instance_arn}/agent/{}", fixed_uuid(username)),
                username,
                // Organisation / site / team; Level4–5 null as in [F2] (data model §3).
                hierarchy: obj([
                    ("Level1", group("org", "CustomerCare")),
                    ("Level2", group(&format!("org/{site}"), site)),
                    ("Level3", group(&format!("org/{site}/{team}"), team)),
                    ("Level4", Value::Null),
                    ("Level5", Value::Null),
                ]),
                routing_profile: obj([
                    (
                        "ARN",
                        Value::String(format!("{instance_arn}/routing-profile/{}", fixed_uuid(&format!("rp/{team}")))),
                    ),
                    ("Name", Value::String(format!("{team} Profile"))),
                ]),
            })
            .collect();
        Synth {
            rng: SmallRng::seed_from_u64(seed),
            emitted: 0,
            seq: 0,
            pending: Vec::new(),
            instance_arn,
            queue_arns,
            agent_static,
        }
    }

    /// The next CTR, with every timestamp placed relative to `now` (the moment the record is
    /// "published" by Connect): the contact ended a few seconds to a few minutes before `now`,
    /// and `LastUpdateTimestamp` is `now` minus a small publish delay (0–5 s). Re-deliveries are
    /// at least 1 s newer than the previous version of the same contact even if `now` has not
    /// advanced.
    pub fn next_record(&mut self, now: OffsetDateTime) -> Value {
        let now = now.unix_timestamp();
        let record = match self.due_pending() {
            Some(i) => {
                let p = self.pending.swap_remove(i);
                self.publish_pending(p, now)
            }
            None => self.fresh(now),
        };
        self.emitted += 1;
        record
    }

    /// The agents the generator uses: `(username, full name, team, site)`, for the lookup CSV.
    /// Deterministic; does not depend on the seed.
    pub fn agents() -> &'static [AgentRow] {
        &AGENTS
    }

    /// Index of the earliest-scheduled pending record that is due now, if any.
    fn due_pending(&self) -> Option<usize> {
        self.pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.due <= self.emitted)
            .min_by_key(|(_, p)| (p.due, p.seq))
            .map(|(i, _)| i)
    }

    fn schedule(&mut self, delay: u64, record: Value, last_update: i64, kind: PendingKind) {
        self.seq += 1;
        self.pending.push(Pending { due: self.emitted + delay, seq: self.seq, record, last_update, kind });
    }

    /// Connect re-publishes a record when e.g. attributes are updated after the contact
    /// (data model §1); decide whether this one will be.
    fn maybe_schedule_redelivery(&mut self, record: &Value, last_update: i64, round: u8) {
        if self.rng.random_bool(P_REDELIVER) {
            let delay = self.rng.random_range(5..=300);
            self.schedule(delay, record.clone(), last_update, PendingKind::Redelivery { round });
        }
    }

    fn publish_pending(&mut self, p: Pending, now: i64) -> Value {
        let Pending { mut record, last_update, kind, .. } = p;
        match kind {
            PendingKind::TransferLeg { publish_delay } => {
                // Rendered when leg A was; it is published now, so move LastUpdate up to `now`
                // (never down: its ACW end is already ≤ the planned value).
                let lu = last_update.max(now - publish_delay);
                set_last_update(&mut record, lu);
                self.maybe_schedule_redelivery(&record, lu, 1);
                record
            }
            PendingKind::Redelivery { round } => {
                // Strictly newer even when `now` stands still: timestamps have 1 s resolution
                // and consumers resolve versions by LastUpdateTimestamp (data model §6).
                let lu = (now - self.rng.random_range(0..=5)).max(last_update + 1);
                self.update_attributes(&mut record, round);
                set_last_update(&mut record, lu);
                if round == 1 {
                    self.maybe_schedule_redelivery(&record, lu, 2);
                }
                record
            }
        }
    }

    /// The change that triggers a re-delivery: like kyopark v2/v3, which only add attributes.
    /// Each round adds a key no earlier version has, so the attributes always differ.
    fn update_attributes(&mut self, record: &mut Value, round: u8) {
        let Some(Value::Object(attrs)) = record.get_mut("Attributes") else {
            return;
        };
        if round <= 1 {
            let score = self.rng.random_range(1..=5u8);
            attrs.insert("surveyScore".into(), Value::String(score.to_string()));
            if self.rng.random_bool(0.5) {
                let d = pick(&mut self.rng, &["Resolved", "FollowUpRequired", "Escalated"]);
                attrs.insert("disposition".into(), Value::String(d.to_owned()));
            }
        } else {
            let mut case = String::with_capacity(13);
            case.push_str("CASE-");
            push_digits(&mut case, self.rng.random_range(0..100_000_000), 8);
            attrs.insert("crmCaseId".into(), Value::String(case));
            let tier = pick(&mut self.rng, &["Gold", "Silver", "Bronze"]);
            attrs.insert("customerTier".into(), Value::String(tier.to_owned()));
        }
    }

    /// A brand-new contact (and, for a transfer, its scheduled second leg).
    fn fresh(&mut self, now: i64) -> Value {
        let publish_delay = self.rng.random_range(0..=5);
        let last_update = now - publish_delay;
        let r = self.rng.random_range(0..100u32);
        let channel = if r < PCT_VOICE {
            Channel::Voice
        } else if r < PCT_VOICE + PCT_CHAT {
            Channel::Chat
        } else {
            Channel::Task
        };
        let mut plan = match channel {
            Channel::Voice => {
                let m = self.rng.random_range(0..100u32);
                if m < 80 {
                    self.voice_inbound(last_update)
                } else if m < 92 {
                    self.voice_outbound(last_update)
                } else {
                    self.voice_callback(last_update)
                }
            }
            Channel::Chat => self.chat(last_update),
            Channel::Task => self.task(last_update),
        };

        let transfer = channel == Channel::Voice
            && plan.method == "INBOUND"
            && plan.work.is_some()
            && self.rng.random_bool(P_TRANSFER);
        if transfer {
            let leg_b = self.transfer_leg(&mut plan, now, publish_delay);
            let delay = self.rng.random_range(2..=6);
            let b_last = leg_b.t.last_update;
            let b_delay = self.rng.random_range(0..=5);
            let b = self.render(leg_b);
            self.schedule(delay, b, b_last, PendingKind::TransferLeg { publish_delay: b_delay });
        }
        let last_update = plan.t.last_update;
        let record = self.render(plan);
        self.maybe_schedule_redelivery(&record, last_update, 1);
        record
    }

    // ---- contact plans -------------------------------------------------------------------

    fn voice_inbound(&mut self, last_update: i64) -> Plan {
        let queue = weighted(
            &mut self.rng,
            &[(Q_BILLING, 25), (Q_TECH, 25), (Q_SALES, 15), (Q_RETENTION, 10), (Q_GENERAL, 25)],
        );
        let abandoned = self.rng.random_bool(P_ABANDON);
        let ivr = self.rng.random_range(10..=90);
        let gap = self.rng.random_range(5..=90);
        if abandoned {
            // Caller hung up while queued (data model §3, sample [F3]).
            let wait = skewed(&mut self.rng, 5, 600);
            let t = timeline(last_update, gap, None, 0, wait, ivr, 0);
            return self.plan(Channel::Voice, "INBOUND", queue, None, t, "CUSTOMER_DISCONNECT");
        }
        let work = self.voice_work(queue);
        let wait = skewed(&mut self.rng, 0, 600);
        let ring = self.rng.random_range(0..=2);
        let t = timeline(last_update, gap, Some(&work), ring, wait, ivr, 0);
        let reason = self.voice_reason();
        self.plan(Channel::Voice, "INBOUND", queue, Some(work), t, reason)
    }

    fn voice_outbound(&mut self, last_update: i64) -> Plan {
        // Agent-dialled sales/retention calls through the team's queue (its outbound queue).
        let queue = if self.rng.random_bool(0.6) { Q_SALES } else { Q_RETENTION };
        let work = self.voice_work(queue);
        let dialing = self.rng.random_range(5..=30);
        let gap = self.rng.random_range(5..=90);
        let t = timeline(last_update, gap, Some(&work), 0, 0, 0, dialing);
        let reason = self.voice_reason();
        let mut plan = self.plan(Channel::Voice, "OUTBOUND", queue, Some(work), t, reason);
        plan.attrs.remove("greetingPlayed");
        plan
    }

    fn voice_callback(&mut self, last_update: i64) -> Plan {
        let queue = weighted(&mut self.rng, &[(Q_BILLING, 40), (Q_TECH, 40), (Q_GENERAL, 20)]);
        let work = self.voice_work(queue);
        let wait = skewed(&mut self.rng, 60, 1800);
        let pre_queue = self.rng.random_range(0..=2);
        let gap = self.rng.random_range(5..=90);
        let t = timeline(last_update, gap, Some(&work), 0, wait, pre_queue, 0);
        let reason = self.voice_reason();
        let mut plan = self.plan(Channel::Voice, "CALLBACK", queue, Some(work), t, reason);
        // DescribeContact: SystemEndpoint "not populated for ... CALLBACK" (data model §2, [S15]).
        plan.system_number = None;
        plan
    }

    fn chat(&mut self, last_update: i64) -> Plan {
        let queue = weighted(&mut self.rng, &[(Q_BILLING, 30), (Q_TECH, 35), (Q_SALES, 15), (Q_GENERAL, 20)]);
        let bot = self.rng.random_range(5..=60);
        let gap = self.rng.random_range(5..=90);
        if self.rng.random_bool(P_ABANDON) {
            let wait = skewed(&mut self.rng, 5, 300);
            let t = timeline(last_update, gap, None, 0, wait, bot, 0);
            let reason =
                if self.rng.random_bool(0.8) { "CUSTOMER_DISCONNECT" } else { "CUSTOMER_CONNECTION_NOT_ESTABLISHED" };
            return self.plan(Channel::Chat, "API", queue, None, t, reason);
        }
        let work = self.work(queue, 120, 1500, 5, 90, false);
        let wait = skewed(&mut self.rng, 0, 300);
        let t = timeline(last_update, gap, Some(&work), 0, wait, bot, 0);
        // Chat reasons from data model §5.3.
        let reason = match self.rng.random_range(0..100u32) {
            0..55 => "CUSTOMER_DISCONNECT",
            55..85 => "AGENT_DISCONNECT",
            85..95 => "IDLE_DISCONNECT",
            95..98 => "AGENT_NETWORK_DISCONNECT",
            _ => "EXPIRED",
        };
        self.plan(Channel::Chat, "API", queue, Some(work), t, reason)
    }

    fn task(&mut self, last_update: i64) -> Plan {
        let queue = if self.rng.random_bool(0.8) { Q_BACKOFFICE } else { Q_BILLING };
        let work = self.work(queue, 60, 1200, 0, 60, false);
        let wait = skewed(&mut self.rng, 0, 3600);
        let gap = self.rng.random_range(5..=90);
        // Some tasks are created ahead of time and scheduled; they enter the queue when due.
        let scheduled = self.rng.random_bool(0.2);
        let pre_queue = if scheduled { self.rng.random_range(600..=86_400) } else { self.rng.random_range(0..=2) };
        let mut t = timeline(last_update, gap, Some(&work), 0, wait, pre_queue, 0);
        if scheduled {
            t.scheduled = Some(t.enqueue);
        }
        let reason = match self.rng.random_range(0..100u32) {
            0..85 => "AGENT_COMPLETED",
            85..95 => "AGENT_DISCONNECT",
            _ => "API",
        };
        self.plan(Channel::Task, "API", queue, Some(work), t, reason)
    }

    /// Turns `a` (an answered inbound call) into a cold transfer and returns leg B.
    ///
    /// B starts when A's agent leg ends ("in transfers, prior contact's value = when that leg
    /// ended", data model §2), and both legs are published around `now`. So B is planned first,
    /// ending just before `now`, and kept to a few minutes (short talk, no holds) so that A's
    /// disconnect stays "a few minutes" back; A is then re-timed backwards from B's start with
    /// its own durations, and its ACW shortened if needed to end before A is published.
    fn transfer_leg(&mut self, a: &mut Plan, now: i64, a_publish_delay: i64) -> Plan {
        let candidates: &[(usize, u32)] = &[(Q_BILLING, 35), (Q_TECH, 35), (Q_SALES, 15), (Q_RETENTION, 15)];
        let mut queue = weighted(&mut self.rng, candidates);
        if queue == a.queue {
            queue = if a.queue == Q_BILLING { Q_TECH } else { Q_BILLING };
        }
        let b_last = now - self.rng.random_range(0..=5);
        let work = self.work(queue, 30, 300, 5, 60, false);
        let wait = skewed(&mut self.rng, 0, 120);
        let flow = self.rng.random_range(0..=5);
        let gap = self.rng.random_range(1..=30);
        let t = timeline(b_last, gap, Some(&work), 0, wait, flow, 0);
        let reason = self.voice_reason();
        let mut b = self.plan(Channel::Voice, "TRANSFER", queue, Some(work), t, reason);
        // Same caller, same dialled number; attributes travel with the contact.
        b.customer_phone = a.customer_phone.clone();
        b.system_number = a.system_number;
        b.attrs = a.attrs.clone();
        b.attrs.insert("transferredFrom".into(), str_val(QUEUES[a.queue].0));
        b.attrs.insert("intent".into(), str_val(pick(&mut self.rng, QUEUES[queue].2)));
        b.initial_id = Some(a.id.clone());
        b.previous_id = Some(a.id.clone());

        let a_last = now - a_publish_delay;
        let disconnect = b.t.initiation;
        if let Some(w) = a.work.as_mut() {
            let ring = a.t.dequeue_to_agent(w);
            let wait = a.t.dequeue - a.t.enqueue;
            let ivr = a.t.enqueue - a.t.connected_to_system;
            // B lasts ≥ 30 s and ends ≥ 1 s before `now` − 5 s, so this is ≥ 0 in practice;
            // the clamp keeps ACW end ≤ LastUpdate regardless.
            w.acw = w.acw.min(a_last - disconnect).max(0);
            let gap = a_last - (disconnect + w.acw);
            a.t = timeline(a_last, gap, Some(&*w), ring, wait, ivr, 0);
        }
        a.disconnect_reason = "AGENT_DISCONNECT";
        a.transfer_completed = Some(disconnect);
        a.next_id = Some(b.id.clone());
        b
    }

    /// Agent work for a voice contact on `queue`: holds are a voice thing.
    fn voice_work(&mut self, queue: usize) -> AgentWork {
        self.work(queue, 30, 900, 5, 120, true)
    }

    fn work(&mut self, queue: usize, talk_lo: i64, talk_hi: i64, acw_lo: i64, acw_hi: i64, holds: bool) -> AgentWork {
        let idx = match QUEUES[queue].1 {
            Some(team) => team * AGENTS_PER_TEAM + self.rng.random_range(0..AGENTS_PER_TEAM),
            None => self.rng.random_range(0..FRONT_LINE_AGENTS),
        };
        let (mut hold, mut longest, mut n) = (0, 0, 0);
        if holds && self.rng.random_bool(0.3) {
            n = self.rng.random_range(1..=3);
            for _ in 0..n {
                let h = self.rng.random_range(5..=180);
                hold += h;
                longest = longest.max(h);
            }
        }
        AgentWork {
            idx,
            attempts: if self.rng.random_bool(0.9) { 1 } else { 2 },
            interaction: skewed(&mut self.rng, talk_lo, talk_hi),
            hold,
            longest_hold: longest,
            holds: n,
            acw: self.rng.random_range(acw_lo..=acw_hi),
        }
    }

    fn voice_reason(&mut self) -> &'static str {
        // Voice reasons from data model §5.3.
        match self.rng.random_range(0..100u32) {
            0..58 => "CUSTOMER_DISCONNECT",
            58..93 => "AGENT_DISCONNECT",
            93..96 => "THIRD_PARTY_DISCONNECT",
            96..98 => "TELECOM_PROBLEM",
            _ => "OTHER",
        }
    }

    /// Fills in identity, endpoints and attributes around the timing.
    fn plan(
        &mut self,
        channel: Channel,
        method: &'static str,
        queue: usize,
        work: Option<AgentWork>,
        t: Times,
        reason: &'static str,
    ) -> Plan {
        let id = uuid(&mut self.rng);
        let first = pick(&mut self.rng, &FIRST_NAMES);
        let last = pick(&mut self.rng, &LAST_NAMES);
        let mut attrs = Map::new();
        let mut name = String::with_capacity(first.len() + last.len() + 1);
        name.push_str(first);
        name.push(' ');
        name.push_str(last);
        attrs.insert("customerName".into(), Value::String(name));
        let mut acct = String::with_capacity(10);
        push_digits(&mut acct, self.rng.random_range(1_000_000_000..10_000_000_000u64), 10);
        attrs.insert("accountNumber".into(), Value::String(acct));
        attrs.insert("intent".into(), Value::String(pick(&mut self.rng, QUEUES[queue].2).to_owned()));
        let tier = pick(&mut self.rng, &["Gold", "Silver", "Bronze", "Standard"]);
        attrs.insert("customerTier".into(), Value::String(tier.to_owned()));
        let lang = if self.rng.random_bool(0.85) { "en-US" } else { "es-US" };
        attrs.insert("language".into(), Value::String(lang.to_owned()));
        attrs.insert("authenticated".into(), Value::String(bool_str(self.rng.random_bool(0.7)).to_owned()));
        let (customer_phone, system_number) = match channel {
            Channel::Voice => {
                attrs.insert("greetingPlayed".into(), Value::String(bool_str(self.rng.random_bool(0.9)).to_owned()));
                attrs.insert("ivrPath".into(), Value::String(format!("main>{}", QUEUES[queue].0.to_ascii_lowercase())));
                // Fake but E.164-shaped: +1 555 xxx xxxx.
                let mut p = String::with_capacity(12);
                p.push_str("+1555");
                push_digits(&mut p, self.rng.random_range(0..10_000_000), 7);
                (Some(p), Some(pick(&mut self.rng, &SYSTEM_NUMBERS)))
            }
            Channel::Chat => {
                let mut email = String::with_capacity(first.len() + last.len() + 13);
                email.push_str(&first.to_ascii_lowercase());
                email.push('.');
                email.push_str(&last.to_ascii_lowercase());
                email.push_str("@example.com");
                attrs.insert("customerEmail".into(), Value::String(email));
                let entry = pick(&mut self.rng, &["website", "mobile-app", "help-centre"]);
                attrs.insert("chatEntryPoint".into(), Value::String(entry.to_owned()));
                (None, None)
            }
            Channel::Task => {
                let mut r = String::with_capacity(11);
                r.push_str("REQ-");
                push_digits(&mut r, self.rng.random_range(0..10_000_000), 7);
                attrs.insert("requestId".into(), Value::String(r));
                (None, None)
            }
        };
        Plan {
            id,
            channel,
            method,
            queue,
            work,
            t,
            disconnect_reason: reason,
            customer_phone,
            system_number,
            attrs,
            initial_id: None,
            previous_id: None,
            next_id: None,
            transfer_completed: None,
        }
    }

    // ---- rendering -----------------------------------------------------------------------

    /// The CTR JSON: every top-level key of the kyopark sample, null where it does not apply.
    ///
    /// Objects are built from arrays already in key order (the order real payloads use, data
    /// model §2): serde_json's map then bulk-builds instead of searching per key, which with
    /// the allocations is most of the cost of a record.
    fn render(&self, p: Plan) -> Value {
        let t = &p.t;
        let (agent, attempts) = match &p.work {
            Some(w) => (self.render_agent(w, t.disconnect), w.attempts),
            None => (Value::Null, 0),
        };
        let (recording, recordings) = match (&p.work, p.channel) {
            (Some(w), Channel::Voice) => recording_values(recording_location(&p.id, w.connected(t.disconnect))),
            _ => (Value::Null, Value::Null),
        };
        // MediaStreams types per data model §2; tasks have no documented stream type.
        let streams = match p.channel {
            Channel::Voice => vec![obj([("Type", str_val("AUDIO"))])],
            Channel::Chat => vec![obj([("Type", str_val("CHAT"))])],
            Channel::Task => Vec::new(),
        };
        let queue = obj([
            ("ARN", Value::String(self.queue_arns[p.queue].clone())),
            ("DequeueTimestamp", ts_val(t.dequeue)),
            ("Duration", Value::from(t.dequeue - t.enqueue)),
            ("EnqueueTimestamp", ts_val(t.enqueue)),
            ("Name", str_val(QUEUES[p.queue].0)),
        ]);
        obj([
            ("AWSAccountId", str_val(ACCOUNT_ID)),
            // Always this value in every published sample (data model §2).
            ("AWSContactTraceRecordFormatVersion", str_val("2017-03-10")),
            ("Agent", agent),
            ("AgentConnectionAttempts", Value::from(attempts)),
            ("AnsweringMachineDetectionStatus", Value::Null),
            ("Attributes", Value::Object(p.attrs)),
            ("Campaign", obj([("CampaignId", Value::Null)])),
            ("Channel", str_val(p.channel.as_str())),
            ("ConnectedToSystemTimestamp", ts_val(t.connected_to_system)),
            ("ContactDetails", Value::Object(Map::new())),
            ("ContactId", Value::String(p.id)),
            ("CustomerEndpoint", endpoint(p.customer_phone)),
            ("DisconnectReason", str_val(p.disconnect_reason)),
            ("DisconnectTimestamp", ts_val(t.disconnect)),
            ("InitialContactId", p.initial_id.map_or(Value::Null, Value::String)),
            ("InitiationMethod", str_val(p.method)),
            ("InitiationTimestamp", ts_val(t.initiation)),
            ("InstanceARN", Value::String(self.instance_arn.clone())),
            ("LastUpdateTimestamp", ts_val(t.last_update)),
            ("MediaStreams", Value::Array(streams)),
            ("NextContactId", p.next_id.map_or(Value::Null, Value::String)),
            ("PreviousContactId", p.previous_id.map_or(Value::Null, Value::String)),
            ("Queue", queue),
            ("Recording", recording),
            ("Recordings", recordings),
            ("References", Value::Array(Vec::new())),
            ("ScheduledTimestamp", t.scheduled.map_or(Value::Null, ts_val)),
            ("SystemEndpoint", endpoint(p.system_number.map(str::to_owned))),
            ("TransferCompletedTimestamp", p.transfer_completed.map_or(Value::Null, ts_val)),
            ("TransferredToEndpoint", Value::Null),
            ("VoiceIdResult", Value::Null),
        ])
    }

    fn render_agent(&self, w: &AgentWork, disconnect: i64) -> Value {
        // `idx` always comes from the fixed team blocks; stay total anyway.
        let Some(a) = self.agent_static.get(w.idx) else {
            return Value::Null;
        };
        obj([
            ("ARN", Value::String(a.arn.clone())),
            ("AfterContactWorkDuration", Value::from(w.acw)),
            ("AfterContactWorkEndTimestamp", ts_val(disconnect + w.acw)),
            ("AfterContactWorkStartTimestamp", ts_val(disconnect)),
            ("AgentInteractionDuration", Value::from(w.interaction)),
            ("ConnectedToAgentTimestamp", ts_val(w.connected(disconnect))),
            ("CustomerHoldDuration", Value::from(w.hold)),
            ("HierarchyGroups", a.hierarchy.clone()),
            ("LongestHoldDuration", Value::from(w.longest_hold)),
            ("NumberOfHolds", Value::from(w.holds)),
            ("RoutingProfile", a.routing_profile.clone()),
            ("Username", str_val(a.username)),
        ])
    }
}

impl AgentWork {
    /// When the agent was connected, given when the contact disconnected.
    fn connected(&self, disconnect: i64) -> i64 {
        disconnect - self.interaction - self.hold
    }
}

impl Times {
    /// Seconds between leaving the queue and the agent connecting (the agent's ring time).
    fn dequeue_to_agent(&self, w: &AgentWork) -> i64 {
        (w.connected(self.disconnect) - self.dequeue).max(0)
    }
}

/// Lays the contact out backwards from its publication: `gap` seconds before `last_update` the
/// record was complete (ACW ended, or the contact disconnected if no agent); before that come
/// the agent's work, `ring`, the queue `wait`, the flow before queueing (`pre_queue`) and, for
/// outbound dialling, `pre_system`. All inputs are ≥ 0, so the order is guaranteed.
fn timeline(
    last_update: i64,
    gap: i64,
    work: Option<&AgentWork>,
    ring: i64,
    wait: i64,
    pre_queue: i64,
    pre_system: i64,
) -> Times {
    let end = last_update - gap.max(0);
    let (disconnect, dequeue) = match work {
        Some(w) => {
            let disconnect = end - w.acw;
            (disconnect, disconnect - w.interaction - w.hold - ring.max(0))
        }
        // Abandoned in queue: left the queue when the customer hung up (data model §3, [F3]).
        None => (end, end),
    };
    let enqueue = dequeue - wait.max(0);
    let connected_to_system = enqueue - pre_queue.max(0);
    Times {
        initiation: connected_to_system - pre_system.max(0),
        connected_to_system,
        scheduled: None,
        enqueue,
        dequeue,
        disconnect,
        last_update,
    }
}

fn set_last_update(record: &mut Value, secs: i64) {
    if let Value::Object(m) = record {
        m.insert("LastUpdateTimestamp".into(), ts_val(secs));
    }
}

fn str_val(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// A JSON object from `(key, value)` pairs; pass them in key order for speed.
fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn endpoint(address: Option<String>) -> Value {
    match address {
        Some(a) => obj([("Address", Value::String(a)), ("Type", str_val("TELEPHONE_NUMBER"))]),
        None => Value::Null,
    }
}

/// `Recording` and the one-element `Recordings`, as in the kyopark sample (S3 storage, the
/// first recording duplicated into the array, data model §2–3).
fn recording_values(location: String) -> (Value, Value) {
    let recording = obj([
        ("DeletionReason", Value::Null),
        ("Location", Value::String(location.clone())),
        ("Status", str_val("AVAILABLE")),
        ("Type", str_val("AUDIO")),
    ]);
    let recordings = obj([
        ("DeletionReason", Value::Null),
        ("FragmentStartNumber", Value::Null),
        ("FragmentStopNumber", Value::Null),
        ("Location", Value::String(location)),
        ("MediaStreamType", str_val("AUDIO")),
        ("ParticipantType", Value::Null),
        ("StartTimestamp", Value::Null),
        ("Status", str_val("AVAILABLE")),
        ("StopTimestamp", Value::Null),
        ("StorageType", str_val("S3")),
    ]);
    (recording, Value::Array(vec![recordings]))
}

/// `<prefix>YYYY/MM/DD/<ContactId>_YYYYMMDDTHH:MM_UTC.wav`, stamped with the moment the agent
/// connected (recording starts then; kyopark: 17:20 = ConnectedToAgentTimestamp).
fn recording_location(contact_id: &str, secs: i64) -> String {
    let c = Civil::from_unix(secs);
    let mut s = String::with_capacity(RECORDING_PREFIX.len() + contact_id.len() + 40);
    s.push_str(RECORDING_PREFIX);
    c.push_year(&mut s);
    s.push('/');
    push_digits(&mut s, c.month, 2);
    s.push('/');
    push_digits(&mut s, c.day, 2);
    s.push('/');
    s.push_str(contact_id);
    s.push('_');
    c.push_year(&mut s);
    push_digits(&mut s, c.month, 2);
    push_digits(&mut s, c.day, 2);
    s.push('T');
    push_digits(&mut s, c.hour, 2);
    s.push(':');
    push_digits(&mut s, c.minute, 2);
    s.push_str("_UTC.wav");
    s
}

fn ts_val(secs: i64) -> Value {
    Value::String(format_ts(secs))
}

/// Broken-down UTC time, computed without `time`'s formatting machinery (hot path).
struct Civil {
    year: i64,
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
}

impl Civil {
    /// Days-to-civil after Howard Hinnant's `civil_from_days`; total for any i64 that
    /// `OffsetDateTime::unix_timestamp` can produce.
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u64;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour: sod / 3600, minute: sod / 60 % 60, second: sod % 60 }
    }

    fn push_year(&self, s: &mut String) {
        if (0..=9999).contains(&self.year) {
            push_digits(s, self.year as u64, 4);
        } else {
            // Outside RFC 3339's range; only reachable with absurd `now` values.
            s.push_str(&format!("{:04}", self.year));
        }
    }
}

/// `yyyy-mm-ddThh:mm:ssZ` (data model §6).
fn format_ts(secs: i64) -> String {
    let c = Civil::from_unix(secs);
    let mut s = String::with_capacity(20);
    c.push_year(&mut s);
    s.push('-');
    push_digits(&mut s, c.month, 2);
    s.push('-');
    push_digits(&mut s, c.day, 2);
    s.push('T');
    push_digits(&mut s, c.hour, 2);
    s.push(':');
    push_digits(&mut s, c.minute, 2);
    s.push(':');
    push_digits(&mut s, c.second, 2);
    s.push('Z');
    s
}

/// Appends the low `width` decimal digits of `n`, zero-padded.
fn push_digits(s: &mut String, n: u64, width: u32) {
    let mut div = 10u64.saturating_pow(width.saturating_sub(1));
    for _ in 0..width {
        s.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// A random (version 4 shaped) UUID string, like Connect's ContactIds.
fn uuid(rng: &mut SmallRng) -> String {
    uuid_from_bits(rng.random(), rng.random())
}

fn uuid_from_bits(hi: u64, lo: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (hi & !0xf000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    let v = (u128::from(hi) << 64) | u128::from(lo);
    let mut s = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            s.push('-');
        }
        s.push(char::from(HEX[((v >> (124 - 4 * i)) & 0xf) as usize]));
    }
    s
}

/// A UUID that is a pure function of `tag`, for the fixed ARNs (instance, queues, agents…):
/// FNV-1a then SplitMix64, so it depends neither on the seed nor on `rand`.
fn fixed_uuid(tag: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut next = || {
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = next();
    let lo = next();
    uuid_from_bits(hi, lo)
}

/// Uniform pick; the slices passed are non-empty constants.
fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    if items.is_empty() {
        return "";
    }
    items[rng.random_range(0..items.len())]
}

/// Picks the first element of a weighted `(value, weight)` list.
fn weighted(rng: &mut SmallRng, items: &[(usize, u32)]) -> usize {
    let total: u32 = items.iter().map(|&(_, w)| w).sum();
    if total == 0 {
        return items.first().map_or(0, |&(v, _)| v);
    }
    let mut r = rng.random_range(0..total);
    for &(v, w) in items {
        if r < w {
            return v;
        }
        r -= w;
    }
    items.last().map_or(0, |&(v, _)| v)
}

/// A duration in `lo..=hi` skewed towards `lo` (u² distribution): most waits and calls are
/// short, a few are long.
fn skewed(rng: &mut SmallRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    let u: i64 = rng.random_range(0..=1000);
    lo + (hi - lo) * u * u / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use time::format_description::well_known::Rfc3339;

    /// Every top-level key of shared/fixtures/ctr/kyopark-voice-inbound-update-v1.json.
    const KYOPARK_KEYS: [&str; 31] = [
        "AWSAccountId",
        "AWSContactTraceRecordFormatVersion",
        "Agent",
        "AgentConnectionAttempts",
        "AnsweringMachineDetectionStatus",
        "Attributes",
        "Campaign",
        "Channel",
        "ConnectedToSystemTimestamp",
        "ContactDetails",
        "ContactId",
        "CustomerEndpoint",
        "DisconnectReason",
        "DisconnectTimestamp",
        "InitialContactId",
        "InitiationMethod",
        "InitiationTimestamp",
        "InstanceARN",
        "LastUpdateTimestamp",
        "MediaStreams",
        "NextContactId",
        "PreviousContactId",
        "Queue",
        "Recording",
        "Recordings",
        "References",
        "ScheduledTimestamp",
        "SystemEndpoint",
        "TransferCompletedTimestamp",
        "TransferredToEndpoint",
        "VoiceIdResult",
    ];

    fn t0() -> OffsetDateTime {
        time::macros::datetime!(2025-06-15 12:00:00 UTC)
    }

    /// `n` records, with `now` advancing 7 ms per record (≈140 records/s).
    fn run(seed: u64, n: usize) -> Vec<Value> {
        let mut s = Synth::new(seed);
        (0..n).map(|i| s.next_record(t0() + time::Duration::milliseconds(7 * i as i64))).collect()
    }

    fn ts(v: &Value, path: &[&str]) -> Option<i64> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        let s = cur.as_str()?;
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'), "{s}");
        Some(OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339").unix_timestamp())
    }

    fn int(v: &Value, path: &[&str]) -> i64 {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_i64().unwrap_or_else(|| panic!("{path:?} not an integer in {v}"))
    }

    fn id(v: &Value) -> &str {
        v["ContactId"].as_str().expect("ContactId")
    }

    #[test]
    fn deterministic_per_seed() {
        let a = run(7, 3000);
        assert_eq!(a, run(7, 3000));
        let b = run(8, 3000);
        assert_ne!(a, b);
        assert_ne!(a[0], b[0]);
    }

    #[test]
    fn shape_and_timestamp_order() {
        let mut s = Synth::new(11);
        for i in 0..20_000i64 {
            let now = t0() + time::Duration::milliseconds(3 * i);
            let r = s.next_record(now);
            let now = now.unix_timestamp();
            for k in KYOPARK_KEYS {
                assert!(r.get(k).is_some(), "missing {k}");
            }
            let cid = id(&r);
            assert_eq!(cid.len(), 36);
            assert_eq!(cid.matches('-').count(), 4);
            assert_eq!(r["AWSContactTraceRecordFormatVersion"], "2017-03-10");

            let init = ts(&r, &["InitiationTimestamp"]).expect("initiation");
            let sys = ts(&r, &["ConnectedToSystemTimestamp"]).expect("system");
            let enq = ts(&r, &["Queue", "EnqueueTimestamp"]).expect("enqueue");
            let deq = ts(&r, &["Queue", "DequeueTimestamp"]).expect("dequeue");
            let disc = ts(&r, &["DisconnectTimestamp"]).expect("disconnect");
            let last = ts(&r, &["LastUpdateTimestamp"]).expect("last update");
            assert!(init <= sys && sys <= enq && enq <= deq && deq <= disc, "{r}");
            assert_eq!(int(&r, &["Queue", "Duration"]), deq - enq);
            if let Some(sch) = ts(&r, &["ScheduledTimestamp"]) {
                assert!(init <= sch && sch <= enq);
            }
            let end = if r["Agent"].is_null() {
                disc
            } else {
                let cta = ts(&r, &["Agent", "ConnectedToAgentTimestamp"]).expect("cta");
                let acw_s = ts(&r, &["Agent", "AfterContactWorkStartTimestamp"]).expect("acw s");
                let acw_e = ts(&r, &["Agent", "AfterContactWorkEndTimestamp"]).expect("acw e");
                assert!(deq <= cta && cta <= disc && disc <= acw_e, "{r}");
                assert_eq!(acw_s, disc);
                assert_eq!(int(&r, &["Agent", "AfterContactWorkDuration"]), acw_e - acw_s);
                assert_eq!(
                    int(&r, &["Agent", "AgentInteractionDuration"]) + int(&r, &["Agent", "CustomerHoldDuration"]),
                    disc - cta
                );
                assert!(int(&r, &["Agent", "LongestHoldDuration"]) <= int(&r, &["Agent", "CustomerHoldDuration"]));
                acw_e
            };
            assert!(end <= last, "{r}");
            // Published at `now` − 0..5 s; re-deliveries may be bumped ahead of a slow clock by
            // their +1 s rule, so allow a little the other way.
            assert!(last <= now + 2, "{r}");
            assert!(now - last <= 5, "{r}");
            // Ended seconds to minutes ago (transfer legs A: up to B's few minutes).
            assert!(now - end <= 900, "{r}");
            match r["Channel"].as_str() {
                Some("VOICE") => {
                    let addr = r["CustomerEndpoint"]["Address"].as_str().expect("voice caller");
                    assert!(addr.starts_with("+1555") && addr.len() == 12);
                    assert_eq!(r["CustomerEndpoint"]["Type"], "TELEPHONE_NUMBER");
                    if r["Agent"].is_null() {
                        assert!(r["Recording"].is_null() && r["Recordings"].is_null());
                    } else {
                        let loc = r["Recording"]["Location"].as_str().expect("recording");
                        assert!(loc.contains("/CallRecordings/") && loc.ends_with("_UTC.wav"));
                        assert!(loc.contains(cid));
                        assert_eq!(r["Recordings"][0]["Location"], loc);
                    }
                }
                Some("CHAT") => {
                    assert!(r["CustomerEndpoint"].is_null() && r["SystemEndpoint"].is_null());
                    assert_eq!(r["InitiationMethod"], "API");
                }
                Some("TASK") => assert_eq!(r["InitiationMethod"], "API"),
                other => panic!("channel {other:?}"),
            }
        }
    }

    #[test]
    fn abandoned_contacts_have_no_agent() {
        let recs = run(3, 10_000);
        let mut abandoned = 0;
        for r in &recs {
            if r["Agent"].is_null() {
                abandoned += 1;
                assert_eq!(r["AgentConnectionAttempts"], 0);
                assert_eq!(r["Queue"]["DequeueTimestamp"], r["DisconnectTimestamp"]);
                assert!(r["Recording"].is_null() && r["Recordings"].is_null());
            } else {
                assert!(int(r, &["AgentConnectionAttempts"]) >= 1);
            }
        }
        let share = f64::from(abandoned) / recs.len() as f64;
        assert!((0.06..=0.10).contains(&share), "abandoned share {share}");
    }

    #[test]
    fn transfers_are_linked_both_ways() {
        let recs = run(5, 10_000);
        let pos: HashMap<&str, usize> = recs.iter().enumerate().map(|(i, r)| (id(r), i)).rev().collect();
        let mut linked = 0;
        for (i, a) in recs.iter().enumerate() {
            let Some(next) = a["NextContactId"].as_str() else {
                continue;
            };
            if pos[id(a)] != i {
                continue; // a re-delivery of A; the first delivery is checked
            }
            let Some(&j) = pos.get(next) else {
                // Leg B is still pending at the end of the run.
                assert!(i + 6 >= recs.len());
                continue;
            };
            let b = &recs[j];
            assert!(j > i && j - i <= 8, "B {j} should follow A {i} closely");
            assert_eq!(b["InitiationMethod"], "TRANSFER");
            assert_eq!(b["PreviousContactId"], id(a));
            assert_eq!(b["InitialContactId"], id(a));
            assert_eq!(b["CustomerEndpoint"], a["CustomerEndpoint"]);
            assert_ne!(b["Queue"]["Name"], a["Queue"]["Name"]);
            assert_eq!(a["TransferCompletedTimestamp"], a["DisconnectTimestamp"]);
            assert_eq!(b["InitiationTimestamp"], a["DisconnectTimestamp"]);
            linked += 1;
        }
        for b in recs.iter().filter(|r| r["InitiationMethod"] == "TRANSFER") {
            let prev = b["PreviousContactId"].as_str().expect("previous");
            let a = &recs[pos[prev]];
            assert_eq!(a["NextContactId"], id(b));
        }
        assert!(linked > 150, "only {linked} transfers");
    }

    #[test]
    fn redeliveries_are_newer_with_other_attributes_only() {
        // `now` frozen: the +1 s rule must still make versions strictly newer.
        let mut s = Synth::new(9);
        let recs: Vec<Value> = (0..10_000).map(|_| s.next_record(t0())).collect();
        let mut versions: HashMap<&str, Vec<&Value>> = HashMap::new();
        for r in &recs {
            versions.entry(id(r)).or_default().push(r);
        }
        let (mut redelivered, mut twice) = (0, 0);
        for vs in versions.values().filter(|vs| vs.len() > 1) {
            redelivered += 1;
            if vs.len() > 2 {
                twice += 1;
            }
            assert!(vs.len() <= 3);
            for w in vs.windows(2) {
                let (old, new) = (w[0], w[1]);
                let lo = ts(old, &["LastUpdateTimestamp"]).expect("old");
                let ln = ts(new, &["LastUpdateTimestamp"]).expect("new");
                assert!(ln > lo);
                assert_ne!(old["Attributes"], new["Attributes"]);
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    if let Value::Object(m) = &mut v {
                        m.remove("Attributes");
                        m.remove("LastUpdateTimestamp");
                    }
                    v
                };
                assert_eq!(strip(old), strip(new));
            }
        }
        let contacts = versions.len() as f64;
        let share = f64::from(redelivered) / contacts;
        assert!((0.07..=0.13).contains(&share), "redelivered share {share}");
        assert!(twice >= 1 && f64::from(twice) / contacts < 0.03, "twice {twice}");
    }

    #[test]
    fn redelivery_gap_in_records() {
        let recs = run(21, 10_000);
        let mut previous: HashMap<&str, usize> = HashMap::new();
        let mut gaps = 0;
        for (i, r) in recs.iter().enumerate() {
            if let Some(j) = previous.insert(id(r), i) {
                // 5..=300 records after the previous version (+ a few when several pending
                // records fall due at the same time and queue up).
                let gap = i - j;
                assert!((5..=310).contains(&gap), "gap {gap}");
                gaps += 1;
            }
        }
        assert!(gaps > 500);
    }

    #[test]
    fn channel_and_method_shares() {
        let recs = run(1, 10_000);
        let n = recs.len() as f64;
        let share = |f: &dyn Fn(&Value) -> bool| recs.iter().filter(|r| f(r)).count() as f64 / n;
        let voice = share(&|r| r["Channel"] == "VOICE");
        let chat = share(&|r| r["Channel"] == "CHAT");
        let task = share(&|r| r["Channel"] == "TASK");
        assert!((0.61..=0.69).contains(&voice), "voice {voice}");
        assert!((0.21..=0.29).contains(&chat), "chat {chat}");
        assert!((0.07..=0.13).contains(&task), "task {task}");
        for m in ["INBOUND", "OUTBOUND", "TRANSFER", "CALLBACK"] {
            let s = share(&|r| r["Channel"] == "VOICE" && r["InitiationMethod"] == m);
            assert!(s > 0.01, "{m} {s}");
        }
        assert!(recs.iter().filter(|r| r["Channel"] != "VOICE").all(|r| r["InitiationMethod"] == "API"));
    }

    #[test]
    fn size_is_realistic() {
        let recs = run(2, 2000);
        let mut sizes: Vec<usize> = recs.iter().map(|r| serde_json::to_vec(r).map_or(0, |b| b.len())).collect();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!((2500..=4000).contains(&median), "median {median}");
        assert!(sizes[sizes.len() - 1] < 8000);
    }

    #[test]
    fn no_panics_for_many_seeds_and_odd_clocks() {
        let extremes = [
            OffsetDateTime::UNIX_EPOCH,
            time::macros::datetime!(0000-01-01 00:00:30 UTC),
            time::macros::datetime!(9999-12-31 23:59:59 UTC),
            time::macros::datetime!(-9999-01-01 00:00:00 UTC),
        ];
        for seed in [0, 1, u64::MAX, 0xdead_beef, 1 << 63] {
            let mut s = Synth::new(seed);
            for i in 0..3000u32 {
                // Includes a clock that goes backwards.
                let now = extremes[(i % 4) as usize].saturating_sub(time::Duration::seconds(i64::from(i % 7)));
                let r = s.next_record(now);
                assert!(r["ContactId"].is_string());
            }
        }
    }

    #[test]
    fn agents_are_fixed() {
        let agents = Synth::agents();
        assert_eq!(agents.len(), 40);
        for (i, (user, name, team, site)) in agents.iter().enumerate() {
            assert_eq!(*user, format!("agent{:03}", i + 1));
            assert!(!name.is_empty() && TEAMS.contains(team) && !site.is_empty());
            assert_eq!(*team, TEAMS[i / AGENTS_PER_TEAM]);
        }
        // Every agent in the records is one of them.
        for r in run(4, 2000) {
            if let Some(u) = r["Agent"]["Username"].as_str() {
                let (_, _, team, site) = agents.iter().find(|a| a.0 == u).expect("known agent");
                assert_eq!(r["Agent"]["HierarchyGroups"]["Level3"]["GroupName"], *team);
                assert_eq!(r["Agent"]["HierarchyGroups"]["Level2"]["GroupName"], *site);
                assert!(r["Agent"]["HierarchyGroups"]["Level4"].is_null());
            }
        }
    }

    fn agents_csv() -> String {
        let field = |f: &str| {
            if f.contains([',', '"', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_owned() }
        };
        let mut out = String::from("username,full_name,team,site\n");
        for (u, n, t, s) in Synth::agents() {
            out.push_str(&[field(u), field(n), field(t), field(s)].join(","));
            out.push('\n');
        }
        out
    }

    #[test]
    fn agents_csv_matches() {
        assert_eq!(include_str!("../../../../pipelines/data/agents.csv"), agents_csv());
    }

    /// Regenerates the CSV: `cargo test write_agents_csv -- --ignored`.
    #[test]
    #[ignore]
    fn write_agents_csv() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/data/agents.csv");
        std::fs::write(path, agents_csv()).expect("write agents.csv");
    }

    #[test]
    fn timestamp_format_matches_time() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let secs = rng.random_range(-62_000_000_000i64..253_000_000_000);
            let t = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
            let expect = t.format(&Rfc3339).expect("format");
            assert_eq!(format_ts(secs), expect);
        }
        assert_eq!(format_ts(1_641_404_915), "2022-01-05T17:48:35Z");
        assert_eq!(
            recording_location("6fe40d2a-1a89-4d73-bfcf-5d9c33894f47", 1_641_403_232),
            format!("{RECORDING_PREFIX}2022/01/05/6fe40d2a-1a89-4d73-bfcf-5d9c33894f47_20220105T17:20_UTC.wav")
        );
    }
}
