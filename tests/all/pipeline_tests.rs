//! `ctrflow test`: every pipeline in `pipelines/` has a sidecar test file and its tests hold;
//! and the tester itself fails, with a readable diff, when an expectation is wrong.

use ctrflow_tests::{ctrflow, repo_root, temp_dir};

fn pipelines() -> Vec<std::path::PathBuf> {
    ctrflow_tests::example_pipelines()
}

#[test]
fn every_example_pipeline_has_tests_and_they_hold() {
    let pipelines = pipelines();
    assert!(pipelines.len() >= 4, "{pipelines:?}");
    for p in pipelines {
        let sidecar = p.with_file_name(format!("{}.tests.toml", p.file_stem().unwrap().to_string_lossy()));
        assert!(sidecar.exists(), "{} has no tests: add {}", p.display(), sidecar.display());
        let out = ctrflow(&repo_root(), &["test", p.to_str().unwrap()]);
        assert_eq!(out.code, Some(0), "ctrflow test {} failed:\n{}\n{}", p.display(), out.stdout, out.stderr);
        assert!(out.stdout.contains("did not.") && out.stdout.contains("; 0 did not."), "{}", out.stdout);
        assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    }
}

/// A copy of the demo's first test with two wrong expectations: a value and a count.
const WRONG: &str = r#"
[[tests]]
name = "deliberately wrong"

[[tests.inputs]]
node = "contacts"
records = [{ ContactId = "c1", Channel = "VOICE", CustomerEndpoint = { Address = "+15555550123" } }]

[[tests.expect]]
at = "voice"
count = 1
equals = { "CustomerEndpoint.Address" = "+15555550123" }

[[tests.expect]]
at = "chat"
count = 1

[[tests]]
name = "right"

[[tests.inputs]]
node = "contacts"
records = [{ ContactId = "c2", Channel = "CHAT" }]

[[tests.expect]]
at = "route.CHAT"
count = 1
"#;

#[test]
fn a_wrong_expectation_fails_with_exit_1_and_a_readable_diff() {
    let dir = temp_dir("pipeline-tests");
    let tests = dir.join("wrong.tests.toml");
    std::fs::write(&tests, WRONG).unwrap();
    let pipeline = repo_root().join("pipelines/local-demo.toml");
    let out = ctrflow(&repo_root(), &["test", pipeline.to_str().unwrap(), tests.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let s = &out.stdout;
    // The failing case, the passing one, and for each wrong expectation what was expected
    // (-) beside what happened (+), naming the record.
    assert!(s.contains("FAIL  deliberately wrong"), "{s}");
    assert!(s.contains("ok    right"), "{s}");
    assert!(s.contains("expect #1 (at = \"voice\"):"), "{s}");
    assert!(s.contains("record 1 of 1 (ContactId \"c1\"):"), "{s}");
    assert!(s.contains("- CustomerEndpoint.Address: \"+15555550123\""), "{s}");
    assert!(s.contains("+ CustomerEndpoint.Address: \"********0123\""), "{s}");
    assert!(s.contains("expect #2 (at = \"chat\"):"), "{s}");
    assert!(s.contains("- count: 1") && s.contains("+ count: 0"), "{s}");
    assert!(s.contains("route.VOICE 1"), "where the record went instead is shown: {s}");
    assert!(s.contains("1 of 2 pipeline test(s) held; 1 did not."), "{s}");
    assert!(out.stderr.contains("1 pipeline test(s) failed"), "{}", out.stderr);
}

/// `ctrflow test` of the local demo with `tests` (a test file's text) that must fail: its
/// output.
fn failing_demo_test(tests: &str) -> String {
    let path = temp_dir("pipeline-tests").join("t.tests.toml");
    std::fs::write(&path, tests).unwrap();
    let pipeline = repo_root().join("pipelines/local-demo.toml");
    let out = ctrflow(&repo_root(), &["test", pipeline.to_str().unwrap(), path.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    out.stdout
}

#[test]
fn a_record_missing_because_it_was_dead_lettered_shows_the_dead_letters_reason() {
    let s = &failing_demo_test(
        "[[tests]]\nname = \"t\"\n[[tests.inputs]]\nnode = \"contacts\"\nrecords = [{ Channel = \"VOICE\" }]\n\
         [[tests.expect]]\nat = \"voice\"\ncount = 1\n",
    );
    assert!(s.contains("- count: 1") && s.contains("+ count: 0"), "{s}");
    assert!(s.contains("(records seen: dead_letters 1"), "{s}");
    assert!(s.contains("dead letter from sources.contacts: not_a_ctr: "), "why it went there is shown: {s}");
}

#[test]
fn a_misspelt_place_is_named_with_a_suggestion() {
    let s = &failing_demo_test(
        "[[tests]]\nname = \"t\"\n[[tests.inputs]]\nnode = \"contacts\"\nrecords = [{ ContactId = \"c\" }]\n\
         [[tests.expect]]\nat = \"voise\"\ncount = 0\n[[tests.expect]]\nat = \"route.VOCE\"\ncount = 0\n",
    );
    assert!(s.contains("(did you mean \"voice\"?)"), "{s}");
    assert!(s.contains("\"route\" has no output \"VOCE\" (its outputs: VOICE, CHAT, TASK, other)"), "{s}");
}

#[test]
fn a_plugin_refusal_under_halt_fails_the_test_saying_the_pipeline_would_stop() {
    let dir = temp_dir("pipeline-tests");
    std::fs::write(
        dir.join("p.toml"),
        "[sources.in]\ntype = \"stdin\"\n[sinks.items]\ntype = \"stdout\"\ninputs = [\"in\"]\nplugin = \"ctr-item\"\non_error = \"halt\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("p.tests.toml"),
        "[[tests]]\nname = \"no key\"\n[[tests.inputs]]\nnode = \"items\"\nrecords = [{ Channel = \"VOICE\" }]\n\
         [[tests.expect]]\nat = \"items\"\ncount = 0\n",
    )
    .unwrap();
    let out = ctrflow(&dir, &["test", "p.toml"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("the pipeline would stop: sinks.items (on_error = \"halt\") refused a record (bad_record)"),
        "{}",
        out.stdout
    );
}
