//! Record assembly: turns a [`Plan`] into the CTR JSON Connect publishes, with every top-level
//! key of the real kyopark sample (tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json),
//! null where it does not apply.
//!
//! Objects are built from arrays already in key order (the order real payloads use):
//! serde_json's map then bulk-builds instead of searching per key, which with the allocations
//! is most of the cost of a record. It draws no random numbers and decides nothing about the
//! contact; what it writes is all in the plan and the deployment.

use serde_json::{Map, Value};

use super::catalog::{ACCOUNT_ID, Deployment, QUEUES, RECORDING_PREFIX};
use super::scenario::{Channel, Plan};
use super::text::{obj, str_val};
use super::timeline::AgentWork;
use super::timestamps::{recording_location, ts_val};

/// The CTR of `p`, in `deployment`.
pub(super) fn render(deployment: &Deployment, p: Plan) -> Value {
    let t = &p.t;
    let (agent, attempts) = match &p.work {
        Some(w) => (render_agent(deployment, w, t.disconnect), w.attempts),
        None => (Value::Null, 0),
    };
    let (recording, recordings) = match (&p.work, p.channel) {
        (Some(w), Channel::Voice) => {
            recording_values(recording_location(RECORDING_PREFIX, &p.id, w.connected(t.disconnect)))
        }
        _ => (Value::Null, Value::Null),
    };
    // Tasks have no documented media stream type.
    let streams = match p.channel {
        Channel::Voice => vec![obj([("Type", str_val("AUDIO"))])],
        Channel::Chat => vec![obj([("Type", str_val("CHAT"))])],
        Channel::Task => Vec::new(),
    };
    let queue = obj([
        ("ARN", Value::String(deployment.queue_arns[p.queue].clone())),
        ("DequeueTimestamp", ts_val(t.dequeue)),
        ("Duration", Value::from(t.dequeue - t.enqueue)),
        ("EnqueueTimestamp", ts_val(t.enqueue)),
        ("Name", str_val(QUEUES[p.queue].name)),
    ]);
    obj([
        ("AWSAccountId", str_val(ACCOUNT_ID)),
        // Always this value in every published sample.
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
        ("InstanceARN", Value::String(deployment.instance_arn.clone())),
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

/// Moves a rendered record's `LastUpdateTimestamp` (a re-delivery, or a transfer leg published
/// later than planned).
pub(super) fn set_last_update(record: &mut Value, secs: i64) {
    if let Value::Object(m) = record {
        m.insert("LastUpdateTimestamp".into(), ts_val(secs));
    }
}

fn render_agent(deployment: &Deployment, w: &AgentWork, disconnect: i64) -> Value {
    // `idx` always comes from the fixed team blocks; stay total anyway.
    let Some(a) = deployment.agents.get(w.idx) else {
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

fn endpoint(address: Option<String>) -> Value {
    match address {
        Some(a) => obj([("Address", Value::String(a)), ("Type", str_val("TELEPHONE_NUMBER"))]),
        None => Value::Null,
    }
}

/// `Recording` and the one-element `Recordings`, as in the kyopark sample (S3 storage, the
/// first recording duplicated into the array).
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
