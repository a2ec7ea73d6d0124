//! The generator's record stream: [`Synth`] produces an endless, seeded stream of Amazon
//! Connect contact trace records (CTRs) shaped like the ones Connect publishes to Kinesis, as
//! `serde_json::Value`s whose top-level keys are a superset of the real sample
//! tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json.
//!
//! The stream is made of fresh contacts (the mix is in `scenario`, in the deployment of
//! `catalog`) and of records published later than they were planned:
//! - the second legs of cold transfers, emitted 2–6 records after leg A;
//! - re-deliveries: ~10 % of contacts are published again 5–300 records later with the same
//!   `ContactId`, a strictly newer `LastUpdateTimestamp` and changed/added `Attributes`, and
//!   nothing else changed — exactly the difference between the real kyopark v1 and v2
//!   deliveries; ~1 % are re-delivered a second time. (The real v2 arrived six days after v1;
//!   here re-deliveries come within seconds, so dedup windows get exercised at demo speed.)
//!   Transfer legs B get their own ~10 % re-deliveries.
//!
//! Every timestamp is placed relative to the `now` passed to [`Synth::next_record`]: the record
//! is "published" at `now`, so `LastUpdateTimestamp` = `now` − 0..5 s (re-deliveries: also at
//! least 1 s after the previous version) and the contact ended a few seconds to a few minutes
//! before that (a transferred leg A ended when leg B started, up to ~10 minutes back).
//! Timestamps are UTC, second precision, `yyyy-mm-ddThh:mm:ssZ`, always in the order `timeline`
//! documents; `Queue.Duration` = Dequeue − Enqueue and `AgentInteractionDuration +
//! CustomerHoldDuration` = Disconnect − ConnectedToAgent.
//!
//! What it deliberately does not generate (so consumers must not infer these are impossible):
//! - the EMAIL channel, QUEUE_TRANSFER / MONITOR / DISCONNECT / EXTERNAL_OUTBOUND methods,
//!   transfer chains longer than one hop, transfers out of Connect (`TransferredToEndpoint` is
//!   always null — in the real kyopark sample such a transfer puts Disconnect *after* ACW end,
//!   which would break the ordering above);
//! - unanswered outbound calls, outbound campaigns / answering-machine detection, Contact Lens,
//!   Voice ID, `References` entries, task `ContactDetails`;
//! - real OUTBOUND/CALLBACK timing: Connect stamps `ConnectedToSystemTimestamp` when the customer
//!   answers, which for callbacks comes *after* the agent is connected; here those contacts
//!   follow the simple chain above instead;
//! - exact duplicate deliveries (the same bytes twice) and anything about transport framing
//!   (KPL aggregation, newline delimiters) — those belong to the connector or a fault injector,
//!   not to the record content;
//! - a stable sequence across `rand` versions or 32/64-bit targets: the RNG is `SmallRng`, so
//!   "same seed, same records" holds for one build, not across dependency upgrades.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::OffsetDateTime;

use super::attributes::update_for_redelivery;
use super::catalog::{AGENTS, AgentRow, Deployment};
use super::render::{render, set_last_update};
use super::scenario::{Fresh, fresh};

/// Probability that a published contact is re-delivered (and, once re-delivered, again).
const P_REDELIVER: f64 = 0.10;

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
    deployment: Deployment,
}

impl Synth {
    /// Same seed, same sequence of records (given the same `now` values).
    pub fn new(seed: u64) -> Self {
        Synth {
            rng: SmallRng::seed_from_u64(seed),
            emitted: 0,
            seq: 0,
            pending: Vec::new(),
            deployment: Deployment::new(),
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

    /// Connect re-publishes a record when e.g. attributes are updated after the contact;
    /// decide whether this one will be.
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
                // and consumers resolve versions by LastUpdateTimestamp.
                let lu = (now - self.rng.random_range(0..=5)).max(last_update + 1);
                if let Some(Value::Object(attrs)) = record.get_mut("Attributes") {
                    update_for_redelivery(&mut self.rng, attrs, round);
                }
                set_last_update(&mut record, lu);
                if round == 1 {
                    self.maybe_schedule_redelivery(&record, lu, 2);
                }
                record
            }
        }
    }

    /// A brand-new contact (and, for a transfer, its scheduled second leg).
    fn fresh(&mut self, now: i64) -> Value {
        let Fresh { plan, transfer } = fresh(&mut self.rng, now);
        if let Some(leg) = transfer {
            let b_last = leg.plan.t.last_update;
            let b = render(&self.deployment, leg.plan);
            self.schedule(leg.after_records, b, b_last, PendingKind::TransferLeg { publish_delay: leg.publish_delay });
        }
        let last_update = plan.t.last_update;
        let record = render(&self.deployment, plan);
        self.maybe_schedule_redelivery(&record, last_update, 1);
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::generator::catalog::{AGENTS_PER_TEAM, TEAMS};
    use std::collections::HashMap;
    use time::format_description::well_known::Rfc3339;

    /// The real record the generated ones are shaped after.
    const KYOPARK_V1: &str = include_str!("../../../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");

    fn kyopark_keys() -> Vec<String> {
        let v: Value = serde_json::from_str(KYOPARK_V1).expect("fixture parses");
        v.as_object().expect("an object").keys().cloned().collect()
    }

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
        let keys = kyopark_keys();
        assert_eq!(keys.len(), 31);
        let mut s = Synth::new(11);
        for i in 0..20_000i64 {
            let now = t0() + time::Duration::milliseconds(3 * i);
            let r = s.next_record(now);
            let now = now.unix_timestamp();
            for k in &keys {
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
}
