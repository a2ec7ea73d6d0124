//! Plugin projects in Python and JavaScript: the files `ctrflow plugin new <name> --lang
//! python|js` writes, for each world (transform, enrich, sink).
//!
//! A project stands alone, outside this repository: it carries its own copy of the contract
//! (`wit/ctrflow.wit`), of the guest library (`ctrflow_plugin.py` or `ctrflow-plugin.js`)
//! and of the build script (`tools/build-plugin.sh`, which installs the pinned
//! componentize-py or componentize-js into `~/.cache/ctrflow/tools` on first use), all taken
//! from this build of ctrflow so they match the host that runs the plugin. Beside them: the
//! plugin (`app.py` / `app.js`, a small working example for its world), `build.sh`, a real
//! CTR sample, a pipeline that runs the plugin on it (`pipeline.toml`), its `ctrflow test`
//! file checking what the plugin does to the sample (`pipeline.tests.toml`) and a README.
//!
//! This module only makes the file list; writing it (and refusing to overwrite) is the
//! command's job.

#[path = "js.rs"]
pub mod js;
#[path = "python.rs"]
pub mod python;

use std::path::PathBuf;

/// The plugin contract, as this host implements it.
pub const WIT: &str = include_str!("../../../wit/ctrflow.wit");
/// The build script every Python or JS plugin project carries.
pub const BUILD_SCRIPT: &str = include_str!("../../../plugin-sdk/tools/build-plugin.sh");
/// A real contact trace record (a voice contact, from the public Amazon Connect samples).
pub const SAMPLE_CTR: &str = include_str!("../../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");

/// The worlds of `wit/ctrflow.wit` a plugin can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Transform,
    Enrich,
    Sink,
}

impl World {
    /// Its name in the WIT and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            World::Transform => "transform",
            World::Enrich => "enrich",
            World::Sink => "sink",
        }
    }

    /// The world named `name`.
    pub fn parse(name: &str) -> Option<World> {
        [World::Transform, World::Enrich, World::Sink].into_iter().find(|w| w.name() == name)
    }
}

/// One file of a project: its path inside the project and its text.
pub type File = (PathBuf, String);

/// The languages besides Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Js,
}

impl Lang {
    /// Its name on the command line and in `build-plugin.sh`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// The files of a new plugin project called `name` (a lowercase identifier with `-`).
pub fn files(lang: Lang, name: &str, world: World) -> Vec<File> {
    let mut files = match lang {
        Lang::Python => python::files(name, world),
        Lang::Js => js::files(name, world),
    };
    files.extend(common(lang, name, world));
    files
}

/// What every project has whatever its language: the contract, the build script, the sample,
/// the pipeline and the README.
fn common(lang: Lang, name: &str, world: World) -> Vec<File> {
    let build = format!(
        "#!/usr/bin/env bash\n\
         # Builds {name}.wasm (installs the pinned {tool} on first use; see tools/build-plugin.sh).\n\
         set -euo pipefail\n\
         cd \"$(dirname \"${{BASH_SOURCE[0]}}\")\"\n\
         bash tools/build-plugin.sh {lang} {world} . \"${{1:-{name}.wasm}}\"\n",
        tool = if lang == Lang::Python { "componentize-py" } else { "componentize-js" },
        lang = lang.name(),
        world = world.name(),
    );
    let mut files = vec![
        (PathBuf::from("wit/ctrflow.wit"), WIT.to_string()),
        (PathBuf::from("tools/build-plugin.sh"), BUILD_SCRIPT.to_string()),
        (PathBuf::from("build.sh"), build),
        (PathBuf::from("sample/ctr.json"), SAMPLE_CTR.to_string()),
        (PathBuf::from("pipeline.toml"), pipeline(name, world)),
        (PathBuf::from("pipeline.tests.toml"), pipeline_tests(name, world)),
        (PathBuf::from("README.md"), readme(lang, name, world)),
    ];
    if world == World::Enrich {
        files.push((
            PathBuf::from("sample/agents.csv"),
            "username,full_name,team\nSteve.Lusk,Steve Lusk,Support\n".to_string(),
        ));
    }
    files
}

/// A pipeline running the plugin on the sample: `out/records.jsonl` (or, for a sink,
/// `out/encoded.jsonl`, the plugin's payloads).
fn pipeline(name: &str, world: World) -> String {
    let head = format!(
        "# Runs {name} on sample/ctr.json. Build first (./build.sh), then: ctrflow run pipeline.toml\n\n\
         [runtime]\nstate_dir = \"out/state\"\n\n\
         [dead_letter]\npath = \"out/dead-letters.jsonl\"\n\n\
         [sources.sample]\ntype = \"file\"\npath = \"sample/ctr.json\"\ncheckpoint = false\n"
    );
    match world {
        World::Transform => format!(
            "{head}\n[transforms.{node}]\nplugin = \"{name}.wasm\"\ninputs = [\"sample\"]\n\
             config = {{ field = \"Channel\", target = \"Attributes.channel_lower\" }}\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"{node}\"]\npath = \"out/records.jsonl\"\n",
            node = node(name)
        ),
        World::Enrich => format!(
            "{head}\n[tables.agents]\ntype = \"csv\"\npath = \"sample/agents.csv\"\nkey = \"username\"\n\n\
             [transforms.{node}]\nplugin = \"{name}.wasm\"\ninputs = [\"sample\"]\ntables = [\"agents\"]\n\
             config = {{ table = \"agents\", key = \"Agent.Username\", target = \"AgentInfo\" }}\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"{node}\"]\npath = \"out/records.jsonl\"\n",
            node = node(name)
        ),
        World::Sink => format!(
            "{head}\n[sinks.{node}]\ntype = \"file\"\nplugin = \"{name}.wasm\"\ninputs = [\"sample\"]\n\
             path = \"out/encoded.jsonl\"\n",
            node = node(name)
        ),
    }
}

/// The contact id of [`SAMPLE_CTR`].
const SAMPLE_CONTACT_ID: &str = "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47";

/// `ctrflow test pipeline.toml`: the plugin in its pipeline on the sample CTR, checked for
/// what the template's plugin does, so the test fails as soon as an edit changes that.
fn pipeline_tests(name: &str, world: World) -> String {
    let head = format!(
        "# `ctrflow test pipeline.toml` (build first: ./build.sh): {name} on the sample CTR.\n\
         # Format: docs/testing-pipelines.md in the ctrflow repository.\n\n\
         [[tests]]\nname = \"the sample CTR through {name}\"\n\n\
         [[tests.inputs]]\nnode = \"sample\"\nfile = \"sample/ctr.json\"\n\n"
    );
    let id = SAMPLE_CONTACT_ID;
    match world {
        World::Transform => format!(
            "{head}[[tests.expect]]\nat = \"out\"\ncount = 1\n\
             equals = {{ ContactId = \"{id}\", \"Attributes.channel_lower\" = \"voice\" }}\n"
        ),
        World::Enrich => format!(
            "{head}[[tests.expect]]\nat = \"out\"\ncount = 1\n\
             equals = {{ ContactId = \"{id}\", \"AgentInfo.full_name\" = \"Steve Lusk\", \"AgentInfo.team\" = \"Support\" }}\n"
        ),
        World::Sink => format!(
            "{head}[[tests.expect]]\nat = \"{node}\"\ncount = 1\n\
             encoded = {{ partition_key = \"{id}\", \"columns.Channel\" = \"VOICE\" }}\n\n\
             [[tests]]\nname = \"a record without a ContactId is dead-lettered\"\n\n\
             [[tests.inputs]]\nnode = \"{node}\"\nrecords = [{{ Channel = \"CHAT\" }}]\n\n\
             [[tests.expect]]\nat = \"dead_letters\"\ncount = 1\n\
             equals = {{ kind = \"bad_record\", node = \"sinks.{node}\" }}\n",
            node = node(name)
        ),
    }
}

/// The node's id in the pipeline: the name with `-` as `_`.
fn node(name: &str) -> String {
    name.replace('-', "_")
}

fn readme(lang: Lang, name: &str, world: World) -> String {
    let (source, library, tool) = match lang {
        Lang::Python => ("app.py", "ctrflow_plugin.py", "componentize-py"),
        Lang::Js => ("app.js", "ctrflow-plugin.js", "componentize-js"),
    };
    let output = if world == World::Sink { "out/encoded.jsonl" } else { "out/records.jsonl" };
    format!(
        "# {name}\n\n\
         A ctrflow {world} plugin in {language}. The plugin is `{source}`; `{library}` is the guest \
         library (records by path, outcomes, lookup, log, count) and `wit/ctrflow.wit` the contract, both \
         copied from the ctrflow that made this project.\n\n\
         ## Build\n\n    ./build.sh            # writes {name}.wasm\n\n\
         The first build installs the pinned {tool} into `~/.cache/ctrflow/tools` (set \
         `CTRFLOW_CACHE_DIR` to move it); it needs python3 or node/npm and reaches PyPI or npm once.\n\n\
         ## Run\n\n    ctrflow run pipeline.toml\n\n\
         runs the plugin on `sample/ctr.json`, a real contact trace record, and writes `{output}`. \
         Records the plugin refuses go to `out/dead-letters.jsonl` with its message.\n\n\
         ## Test\n\n    ctrflow test pipeline.toml\n\n\
         runs `pipeline.tests.toml`: the plugin on the sample, checked for what it does now; change the \
         expectations with the plugin. Exit 0 when every test holds, 1 with a diff.\n\n\
         ## Notes\n\n\
         - No I/O: the plugin gets no files, network or environment; {print} goes nowhere: use `log`.\n\
         - A {language} plugin carries its interpreter: expect a component of 10-20 MB, a few seconds to \
         compile when the pipeline first loads it (cached afterwards), and a per-record cost well above a \
         Rust plugin's (docs/plugins-in-other-languages.md in the ctrflow repository).\n",
        language = if lang == Lang::Python { "Python" } else { "JavaScript" },
        world = world.name(),
        print = if lang == Lang::Python { "`print`" } else { "`console.log`" },
    )
}
