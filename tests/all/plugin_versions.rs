//! Plugin contract versions: a component built for another version of `wit/ctrflow.wit`
//! (`plugins/testing/contract-next`, generated from a copy whose package says 0.2.0) is
//! refused with a message naming both versions, and the SDK's own plugins are accepted.

use ctrflow::host::{CONTRACT_VERSION, Host, HostError};
use ctrflow_tests::{ctrflow, repo_root, temp_dir, test_plugin};

#[test]
fn the_contract_version_is_the_wit_package_version() {
    let wit = std::fs::read_to_string(repo_root().join("wit/ctrflow.wit")).unwrap();
    assert!(
        wit.contains(&format!("package ctrflow:plugin@{CONTRACT_VERSION};")),
        "wit/ctrflow.wit and CONTRACT_VERSION differ"
    );
}

/// The test plugin's WIT is the real one but for its version, so it tests only that.
#[test]
fn the_next_contract_copy_differs_only_in_its_version() {
    let wit = std::fs::read_to_string(repo_root().join("wit/ctrflow.wit")).unwrap();
    let copy = std::fs::read_to_string(repo_root().join("plugins/testing/contract-next/wit/ctrflow.wit")).unwrap();
    let expected = wit.replace(&format!("package ctrflow:plugin@{CONTRACT_VERSION};"), "package ctrflow:plugin@0.2.0;");
    assert_ne!(expected, wit);
    assert_eq!(copy, expected, "update plugins/testing/contract-next/wit/ctrflow.wit from wit/ctrflow.wit");
}

#[test]
fn a_plugin_built_for_another_contract_is_refused_naming_both_versions() {
    let host = Host::new(None).unwrap();
    let err = match host.compile("contract-next", &test_plugin("contract-next")) {
        Ok(_) => panic!("a 0.2.0 plugin was accepted by a {CONTRACT_VERSION} host"),
        Err(e) => e,
    };
    assert!(matches!(err, HostError::ContractVersion { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("contract 0.2.0") && msg.contains(&format!("implements {CONTRACT_VERSION}")), "{msg}");
    // A plugin built with the SDK for this contract loads.
    host.compile("bench-edit", &test_plugin("bench-edit")).unwrap();
}

#[test]
fn validate_names_both_versions_for_a_pipeline_using_such_a_plugin() {
    let dir = temp_dir("plugin-versions");
    std::fs::write(dir.join("next.wasm"), test_plugin("contract-next")).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"stdin\"\n[transforms.t]\nplugin = \"next.wasm\"\ninputs = [\"in\"]\n\
         [sinks.out]\ntype = \"stdout\"\ninputs = [\"t\"]\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["validate", "p.toml"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("transforms.t"), "{}", out.stderr);
    assert!(
        out.stderr.contains("was built for the ctrflow plugin contract 0.2.0")
            && out.stderr.contains(&format!("this ctrflow implements {CONTRACT_VERSION}")),
        "{}",
        out.stderr
    );
}
