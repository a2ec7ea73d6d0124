//! Which version of the plugin contract a component was built for, read from the names of
//! the interfaces it imports and exports (`ctrflow:plugin/host@0.1.0`): the WIT package's
//! version travels in every such name, so a plugin needs to declare nothing else.
//!
//! Versions follow semver as the component model reads it: `0.x.*` versions are compatible
//! with each other only within one `x`, later ones within one major version. This module
//! only compares; the host refuses (`HostError::ContractVersion`).

/// The prefix of every contract interface's name.
const PACKAGE: &str = "ctrflow:plugin/";

/// The contract version in one import or export name, if it is a contract interface.
pub fn version_in(name: &str) -> Option<&str> {
    name.strip_prefix(PACKAGE)?.split_once('@').map(|(_, v)| v)
}

/// Whether a plugin built for `plugin` runs on a host implementing `host`.
pub fn compatible(plugin: &str, host: &str) -> bool {
    match (parse(plugin), parse(host)) {
        (Some((pmaj, pmin)), Some((hmaj, hmin))) => pmaj == hmaj && (hmaj > 0 || pmin == hmin),
        _ => plugin == host,
    }
}

/// `major.minor` of a semver version (`0.1.0`, `1.2.3-rc.1`).
fn parse(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The first contract version among `names` that `host` is not compatible with.
pub fn incompatible<'a>(names: impl IntoIterator<Item = &'a str>, host: &str) -> Option<String> {
    names.into_iter().filter_map(version_in).find(|v| !compatible(v, host)).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_contract_names_only() {
        assert_eq!(version_in("ctrflow:plugin/transformer@0.1.0"), Some("0.1.0"));
        assert_eq!(version_in("wasi:io/streams@0.2.0"), None);
        assert_eq!(version_in("ctrflow:plugin/host"), None);
    }

    #[test]
    fn zero_versions_are_compatible_within_a_minor_later_ones_within_a_major() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.2"));
        assert!(!compatible("2.0.0", "1.9.0"));
        assert_eq!(
            incompatible(["wasi:cli/environment@0.2.6", "ctrflow:plugin/host@0.2.0"], "0.1.0"),
            Some("0.2.0".to_string())
        );
        assert_eq!(incompatible(["ctrflow:plugin/host@0.1.0"], "0.1.0"), None);
    }
}
