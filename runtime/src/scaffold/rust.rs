//! The Rust templates (the files in `rust/`), rendered for one plugin: a crate depending on
//! the plugin SDK by path, built with `cargo build --release --target wasm32-wasip2`.

use std::path::Path;

use super::{ProjectFile, Request, SAMPLE_CTR, TOOLCHAIN, World, absolute, checkout_for, relative, type_name};

const CARGO_TOML: &str = include_str!("rust/Cargo.toml.in");
const TRANSFORM: &str = include_str!("rust/transform.rs.in");
const ENRICH: &str = include_str!("rust/enrich.rs.in");
const SINK: &str = include_str!("rust/sink.rs.in");
const README: &str = include_str!("rust/README.md.in");
const PIPELINE: &str = include_str!("rust/pipeline.toml.in");
const PIPELINE_SINK: &str = include_str!("rust/pipeline-sink.toml.in");
const PIPELINE_TESTS: &str = include_str!("rust/pipeline.tests.toml.in");
const PIPELINE_TESTS_SINK: &str = include_str!("rust/pipeline-sink.tests.toml.in");
const AGENTS_CSV: &str = include_str!("rust/agents.csv");
const GITIGNORE: &str = "/target\n/Cargo.lock\n/out\n";

/// The project's files for `request`, to be written into `dir`.
pub fn files(request: &Request, dir: &Path) -> anyhow::Result<Vec<ProjectFile>> {
    let checkout = checkout_for(request)?;
    // Inside the checkout the path is relative, so the checkout can move; outside, absolute.
    let sdk = if absolute(dir).starts_with(&checkout) {
        relative(dir, &checkout.join("plugin-sdk"))
    } else {
        checkout.join("plugin-sdk")
    };
    let world = request.world;
    let render = |template: &str| {
        template
            .replace("{{name}}", &request.name)
            .replace("{{crate}}", &request.name.replace('-', "_"))
            .replace("{{type}}", &type_name(&request.name))
            .replace("{{world}}", world.as_str())
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{contract}}", crate::host::CONTRACT_VERSION)
    };
    let (code, pipeline, tests) = match world {
        World::Transform => (TRANSFORM, PIPELINE, PIPELINE_TESTS),
        World::Enrich => (ENRICH, PIPELINE, PIPELINE_TESTS),
        World::Sink => (SINK, PIPELINE_SINK, PIPELINE_TESTS_SINK),
    };
    // The enrich example joins a table; the others have none.
    let pipeline = render(pipeline).replace(
        "{{tables}}",
        if world == World::Enrich {
            "tables = [\"agents\"]\nconfig = { table = \"agents\", key = \"Agent.Username\", target = \"AgentInfo\" }"
        } else {
            ""
        },
    );
    let pipeline = pipeline.replace(
        "{{table_decl}}",
        if world == World::Enrich {
            "[tables.agents]\ntype = \"csv\"\npath = \"agents.csv\"\nkey = \"username\"\n"
        } else {
            ""
        },
    );
    // What the example test checks the plugin did to the sample.
    let check = match world {
        World::Transform => "\"Attributes.channel_tag\" = \"voice\"",
        World::Enrich => "\"AgentInfo.team\" = \"TCC\"",
        World::Sink => "",
    };
    let mut files = vec![
        ProjectFile { path: "Cargo.toml", text: render(CARGO_TOML) },
        ProjectFile { path: "src/lib.rs", text: render(code) },
        ProjectFile { path: "README.md", text: render(README) },
        ProjectFile { path: "pipeline.toml", text: pipeline },
        ProjectFile { path: "pipeline.tests.toml", text: render(tests).replace("{{check}}", check) },
        ProjectFile { path: "tests/sample-ctr.json", text: SAMPLE_CTR.to_string() },
        ProjectFile { path: "rust-toolchain.toml", text: TOOLCHAIN.to_string() },
        ProjectFile { path: ".gitignore", text: GITIGNORE.to_string() },
    ];
    if world == World::Enrich {
        files.push(ProjectFile { path: "agents.csv", text: AGENTS_CSV.to_string() });
    }
    Ok(files)
}
