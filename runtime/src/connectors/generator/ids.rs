//! The UUIDs in a generated record: `ContactId`s drawn from the generator's seeded RNG, and the
//! fixed resource ids in the ARNs (instance, queues, agents, hierarchy groups, routing
//! profiles), which are a pure function of a name.
//!
//! Both are version-4 shaped like the ids Connect issues, built with `uuid`'s
//! [`Builder::from_random_bytes`] from bytes this module chooses, never from the operating
//! system's RNG: that is what keeps the generator's output the same for the same seed. It
//! does not decide which ids a contact gets (that is the scenario's job).

use rand::Rng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};
use uuid::{Builder, Uuid};

/// A random (version 4) UUID string, like Connect's `ContactId`s, from the seeded RNG.
pub(super) fn contact_id(rng: &mut SmallRng) -> String {
    // Two u64 draws, high half first: the order the records of a seed were generated with.
    let hi: u64 = rng.random();
    let lo: u64 = rng.random();
    hyphenated(Builder::from_random_bytes(((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes()).into_uuid())
}

/// A version-4 shaped UUID that depends only on `name` (neither on the seed nor on `rand`), so
/// the deployment's ARNs are the same in every run. SHA-256 stands in for the random bytes;
/// a name-based v5 UUID would do the same job but would not look like Connect's ids.
pub(super) fn fixed_id(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    hyphenated(Builder::from_random_bytes(bytes).into_uuid())
}

fn hyphenated(id: Uuid) -> String {
    id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn contact_ids_are_v4_and_follow_the_seed() {
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..100).map(|_| contact_id(&mut rng)).collect::<Vec<_>>()
        };
        let ids = draw(1);
        assert_eq!(ids, draw(1));
        assert_ne!(ids, draw(2));
        for id in &ids {
            let parsed = Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(*id, parsed.hyphenated().to_string(), "lower-case, hyphenated");
        }
    }

    #[test]
    fn fixed_ids_depend_only_on_the_name() {
        assert_eq!(fixed_id("agent001"), fixed_id("agent001"));
        assert_ne!(fixed_id("agent001"), fixed_id("agent002"));
        assert_eq!(Uuid::parse_str(&fixed_id("instance")).expect("a UUID").get_version_num(), 4);
    }
}
