//! What the contact flows record about the customer: the contact `Attributes` (fake PII such as
//! `customerName`, `accountNumber`, `customerEmail`, plus intent, tier, language…), the
//! customer's phone number, the number they dialled, and the attributes a later update adds
//! (the only thing that differs between the deliveries of a re-published record, as between
//! the real kyopark v1 and v2 in tests/fixtures/ctr/).
//!
//! Every value is a string, as Connect's attributes are. It does not decide the channel, the
//! queue or when a re-delivery happens (that is the scenario's and the stream's job).

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Map, Value};

use super::catalog::{FIRST_NAMES, LAST_NAMES, Queue, SYSTEM_NUMBERS};
use super::random::pick;
use super::text::{bool_val, numbered, str_val};

/// The customer as the record shows them; each channel adds its own part.
pub(super) struct Customer {
    pub attrs: Map<String, Value>,
    /// `CustomerEndpoint` address: voice only.
    pub phone: Option<String>,
    /// `SystemEndpoint` address: the number the customer dialled, voice only.
    pub system_number: Option<&'static str>,
    first: &'static str,
    last: &'static str,
}

impl Customer {
    /// A new customer calling about something `queue` handles: the attributes of every channel.
    pub fn draw(rng: &mut SmallRng, queue: &Queue) -> Customer {
        let first = pick(rng, &FIRST_NAMES);
        let last = pick(rng, &LAST_NAMES);
        let mut attrs = Map::new();
        attrs.insert("customerName".into(), Value::String(format!("{first} {last}")));
        attrs.insert(
            "accountNumber".into(),
            Value::String(numbered("", rng.random_range(1_000_000_000..10_000_000_000), 10)),
        );
        attrs.insert("intent".into(), str_val(pick(rng, queue.intents)));
        attrs.insert("customerTier".into(), str_val(pick(rng, &["Gold", "Silver", "Bronze", "Standard"])));
        attrs.insert("language".into(), str_val(if rng.random_bool(0.85) { "en-US" } else { "es-US" }));
        attrs.insert("authenticated".into(), bool_val(rng.random_bool(0.7)));
        Customer { attrs, phone: None, system_number: None, first, last }
    }

    /// A caller: the IVR's attributes, a fake but E.164-shaped number (+1 555 xxx xxxx) and one
    /// of the instance's numbers.
    pub fn voice(mut self, rng: &mut SmallRng, queue: &Queue) -> Customer {
        self.attrs.insert("greetingPlayed".into(), bool_val(rng.random_bool(0.9)));
        self.attrs.insert("ivrPath".into(), Value::String(format!("main>{}", queue.name.to_ascii_lowercase())));
        self.phone = Some(numbered("+1555", rng.random_range(0..10_000_000), 7));
        self.system_number = Some(pick(rng, &SYSTEM_NUMBERS));
        self
    }

    /// A chat: the customer's email and where they started the chat.
    pub fn chat(mut self, rng: &mut SmallRng) -> Customer {
        let email = format!("{}.{}@example.com", self.first.to_ascii_lowercase(), self.last.to_ascii_lowercase());
        self.attrs.insert("customerEmail".into(), Value::String(email));
        self.attrs.insert("chatEntryPoint".into(), str_val(pick(rng, &["website", "mobile-app", "help-centre"])));
        self
    }

    /// A task: the id of the request it was created for.
    pub fn task(mut self, rng: &mut SmallRng) -> Customer {
        self.attrs.insert("requestId".into(), Value::String(numbered("REQ-", rng.random_range(0..10_000_000), 7)));
        self
    }
}

/// The change that triggers re-delivery `round` (1 or 2): like the kyopark v2/v3, it only adds
/// attributes, and each round adds a key no earlier version has, so the attributes always
/// differ from the previous delivery's.
pub(super) fn update_for_redelivery(rng: &mut SmallRng, attrs: &mut Map<String, Value>, round: u8) {
    if round <= 1 {
        let score = rng.random_range(1..=5u8);
        attrs.insert("surveyScore".into(), Value::String(score.to_string()));
        if rng.random_bool(0.5) {
            attrs.insert("disposition".into(), str_val(pick(rng, &["Resolved", "FollowUpRequired", "Escalated"])));
        }
    } else {
        attrs.insert("crmCaseId".into(), Value::String(numbered("CASE-", rng.random_range(0..100_000_000), 8)));
        attrs.insert("customerTier".into(), str_val(pick(rng, &["Gold", "Silver", "Bronze"])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::generator::catalog::{Q_BILLING, QUEUES};
    use rand::SeedableRng;

    #[test]
    fn each_channel_adds_its_part() {
        let mut rng = SmallRng::seed_from_u64(5);
        let q = &QUEUES[Q_BILLING];
        let voice = Customer::draw(&mut rng, q).voice(&mut rng, q);
        let phone = voice.phone.as_deref().expect("caller");
        assert!(phone.starts_with("+1555") && phone.len() == 12, "{phone}");
        assert!(voice.system_number.is_some() && voice.attrs["ivrPath"] == "main>billing");
        assert!(q.intents.contains(&voice.attrs["intent"].as_str().expect("intent")));

        let chat = Customer::draw(&mut rng, q).chat(&mut rng);
        let name = chat.attrs["customerName"].as_str().expect("name").to_ascii_lowercase().replace(' ', ".");
        assert_eq!(chat.attrs["customerEmail"], format!("{name}@example.com"));
        assert!(chat.phone.is_none() && chat.system_number.is_none());

        let task = Customer::draw(&mut rng, q).task(&mut rng);
        assert_eq!(task.attrs["requestId"].as_str().map(str::len), Some(11));
        assert_eq!(task.attrs["accountNumber"].as_str().map(str::len), Some(10));
    }

    #[test]
    fn every_redelivery_round_changes_the_attributes() {
        let mut rng = SmallRng::seed_from_u64(6);
        for _ in 0..100 {
            let mut attrs = Customer::draw(&mut rng, &QUEUES[Q_BILLING]).attrs;
            let v0 = attrs.clone();
            update_for_redelivery(&mut rng, &mut attrs, 1);
            let v1 = attrs.clone();
            update_for_redelivery(&mut rng, &mut attrs, 2);
            assert!(v0 != v1 && v1 != attrs);
            assert!(v1.contains_key("surveyScore") && attrs.contains_key("crmCaseId"));
        }
    }
}
