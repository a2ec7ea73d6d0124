//! The fixed, fake Connect deployment the generator's contacts happen in: the account and
//! instance, its 6 queues, the 40 agents in 5 teams across 3 sites, the customers' names, and
//! the ARNs and `Agent` objects derived from them.
//!
//! Nothing here depends on the seed, so the agents lookup CSV (`pipelines/data/agents.csv`) and
//! every ARN stay the same from run to run. It does not decide who handles a contact (that is
//! the scenario's job) nor render a record.

use serde_json::Value;

use super::ids::fixed_id;
use super::text::{obj, str_val};

/// One agent the generator routes contacts to: `(username, full name, team, site)`.
pub type AgentRow = (&'static str, &'static str, &'static str, &'static str);

/// Like the anonymised account of the real kyopark sample, not a real one.
pub(super) const ACCOUNT_ID: &str = "123456789012";
const REGION: &str = "us-east-1";
/// `<bucket>/connect/<instance alias>/CallRecordings/`: the layout of the real samples' S3
/// recording locations.
pub(super) const RECORDING_PREFIX: &str = "amazon-connect-5f1e0c2a9b7d/connect/ctrflow-demo/CallRecordings/";
/// Claimed numbers of the instance (`SystemEndpoint` of voice contacts).
pub(super) const SYSTEM_NUMBERS: [&str; 3] = ["+18005550100", "+18005550123", "+18885550199"];

/// Teams, in the order of the blocks of 8 agents in [`AGENTS`]. Index = team id.
pub(super) const TEAMS: [&str; 5] = ["Billing", "Tech Support", "Sales", "Retention", "Back Office"];
pub(super) const AGENTS_PER_TEAM: usize = 8;
/// Agents of the four front-line teams (the first 32) take general queue traffic.
pub(super) const FRONT_LINE_AGENTS: usize = 32;

/// Blocks of 8 per team, in the order of [`TEAMS`].
pub(super) static AGENTS: [AgentRow; 40] = [
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

/// A queue: its name, the team that works it (`None`: any front-line agent) and the intents
/// callers state when they reach it.
pub(super) struct Queue {
    pub name: &'static str,
    pub team: Option<usize>,
    pub intents: &'static [&'static str],
}

/// Indexed by the `Q_*` constants.
pub(super) const QUEUES: [Queue; 6] = [
    Queue {
        name: "Billing",
        team: Some(0),
        intents: &["PayBill", "DisputeCharge", "UpdatePaymentMethod", "RefundStatus"],
    },
    Queue {
        name: "TechSupport",
        team: Some(1),
        intents: &["ResetPassword", "ServiceOutage", "DeviceSetup", "SlowConnection"],
    },
    Queue { name: "Sales", team: Some(2), intents: &["NewPlan", "Upgrade", "AddLine"] },
    Queue { name: "Retention", team: Some(3), intents: &["CancelService", "PriceMatch"] },
    Queue { name: "GeneralEnquiries", team: None, intents: &["CheckBalance", "StoreHours", "ChangeAddress", "Other"] },
    Queue { name: "BackOffice", team: Some(4), intents: &["ProcessRefund", "VerifyDocuments", "AddressChange"] },
];
pub(super) const Q_BILLING: usize = 0;
pub(super) const Q_TECH: usize = 1;
pub(super) const Q_SALES: usize = 2;
pub(super) const Q_RETENTION: usize = 3;
pub(super) const Q_GENERAL: usize = 4;
pub(super) const Q_BACKOFFICE: usize = 5;

/// Customers' names, combined at random.
pub(super) const FIRST_NAMES: [&str; 20] = [
    "Alice", "Bruno", "Carmen", "Deepak", "Elena", "Farid", "Gwen", "Hiro", "Ines", "Jonas", "Keiko", "Luis", "Maya",
    "Nikolai", "Omar", "Paula", "Quinn", "Rosa", "Stefan", "Tara",
];
pub(super) const LAST_NAMES: [&str; 20] = [
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

/// The deployment's ARNs and the per-agent parts of `Agent` objects, built once per generator.
pub(super) struct Deployment {
    pub instance_arn: String,
    /// Indexed like [`QUEUES`].
    pub queue_arns: Vec<String>,
    /// Indexed like [`AGENTS`].
    pub agents: Vec<AgentStatic>,
}

/// The parts of an `Agent` object that never change for an agent.
pub(super) struct AgentStatic {
    pub arn: String,
    pub username: &'static str,
    pub hierarchy: Value,
    pub routing_profile: Value,
}

impl Deployment {
    pub fn new() -> Self {
        let instance_arn = format!("arn:aws:connect:{REGION}:{ACCOUNT_ID}:instance/{}", fixed_id("instance"));
        let queue_arns = QUEUES.iter().map(|q| format!("{instance_arn}/queue/{}", fixed_id(q.name))).collect();
        let group = |path: &str, name: &str| {
            obj([
                ("ARN", Value::String(format!("{instance_arn}/agent-group/{}", fixed_id(path)))),
                ("GroupName", str_val(name)),
            ])
        };
        let agents = AGENTS
            .iter()
            .map(|&(username, _, team, site)| AgentStatic {
                arn: format!("{instance_arn}/agent/{}", fixed_id(username)),
                username,
                // Organisation / site / team; Level4–5 null as in the kyopark sample.
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
                        Value::String(format!("{instance_arn}/routing-profile/{}", fixed_id(&format!("rp/{team}")))),
                    ),
                    ("Name", Value::String(format!("{team} Profile"))),
                ]),
            })
            .collect();
        Deployment { instance_arn, queue_arns, agents }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_in_team_blocks() {
        assert_eq!(AGENTS.len(), TEAMS.len() * AGENTS_PER_TEAM);
        for (i, (user, name, team, site)) in AGENTS.iter().enumerate() {
            assert_eq!(*user, format!("agent{:03}", i + 1));
            assert!(!name.is_empty() && !site.is_empty());
            assert_eq!(*team, TEAMS[i / AGENTS_PER_TEAM]);
        }
        for q in &QUEUES {
            assert!(!q.intents.is_empty(), "{}", q.name);
            if let Some(team) = q.team {
                assert!(team < TEAMS.len(), "{}", q.name);
            }
        }
    }

    #[test]
    fn arns_are_fixed_and_distinct() {
        let (a, b) = (Deployment::new(), Deployment::new());
        assert_eq!(a.instance_arn, b.instance_arn);
        assert_eq!(a.queue_arns, b.queue_arns);
        let mut arns: Vec<&str> = a.agents.iter().map(|g| g.arn.as_str()).collect();
        arns.extend(a.queue_arns.iter().map(String::as_str));
        let n = arns.len();
        arns.sort_unstable();
        arns.dedup();
        assert_eq!(arns.len(), n);
        assert!(a.instance_arn.starts_with("arn:aws:connect:us-east-1:123456789012:instance/"));
    }
}
