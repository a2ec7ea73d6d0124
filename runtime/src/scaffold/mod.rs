//! `ctrflow plugin new`: writes a plugin project that builds and runs in a pipeline as it is —
//! the code, a README, a native test on a real CTR sample, an example pipeline with its
//! `ctrflow test` file, and the build command.
//!
//! One module per language ([`rust`]) renders that language's templates (files beside it);
//! this module checks the request, finds the plugin SDK and writes the files. It does not
//! build anything.

pub mod rust;

use std::path::{Component, Path, PathBuf};

/// The world a plugin implements (`wit/ctrflow.wit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// Reads and changes records, decides where they go.
    Transform,
    /// A transform that may also look rows up in the tables its node grants.
    Enrich,
    /// Encodes records for a sink's destination.
    Sink,
}

/// The language a plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the plugin SDK (`plugin-sdk/`).
    Rust,
    /// Python, through componentize-py.
    Python,
    /// JavaScript, through componentize-js (jco).
    Js,
}

impl World {
    /// Its name, as in the WIT and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Transform => "transform",
            World::Enrich => "enrich",
            World::Sink => "sink",
        }
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct Request {
    /// The plugin's name: lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Its world.
    pub world: World,
    /// Where its folder (named `name`) is created.
    pub parent: PathBuf,
    /// The ctrflow checkout whose SDK and WIT it builds against; default: the checkout the
    /// folder is created in.
    pub checkout: Option<PathBuf>,
}

/// One file of a project: its path inside the project, and its text.
pub struct ProjectFile {
    /// Relative to the project folder.
    pub path: &'static str,
    /// Its contents.
    pub text: String,
}

/// A real contact trace record (a 2022 inbound voice contact answered by an agent), shipped
/// with every project as its test sample.
pub const SAMPLE_CTR: &str = include_str!("../../../tests/fixtures/ctr/kyopark-voice-inbound-update-v1.json");

/// The toolchain file of this repository: a project outside it builds with the same
/// toolchain and the wasm target (rustup installs what the file lists).
pub const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

impl Lang {
    /// The commands that take a new project of this language from its folder to a run.
    pub fn next_steps(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &[
                "cargo test                                      # native tests, on a real CTR",
                "cargo build --release --target wasm32-wasip2    # the component",
                "ctrflow run pipeline.toml && ctrflow test pipeline.toml",
            ],
            Lang::Python => &[
                "./build.sh                 # the component (installs componentize-py on first use)",
                "ctrflow run pipeline.toml && ctrflow test pipeline.toml   # on sample/ctr.json",
            ],
            Lang::Js => &[
                "./build.sh                 # the component (installs componentize-js on first use)",
                "ctrflow run pipeline.toml && ctrflow test pipeline.toml   # on sample/ctr.json",
            ],
        }
    }
}

/// Creates the project; returns its folder.
pub fn create(request: &Request, lang: Lang) -> anyhow::Result<PathBuf> {
    check_name(&request.name)?;
    let dir = request.parent.join(&request.name);
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} exists and is not empty: choose another name or folder", dir.display());
    }
    let files: Vec<(PathBuf, String)> = match lang {
        Lang::Rust => rust::files(request, &dir)?.into_iter().map(|f| (PathBuf::from(f.path), f.text)).collect(),
        Lang::Python | Lang::Js => {
            use crate::scaffold_lang as other;
            let world = match request.world {
                World::Transform => other::World::Transform,
                World::Enrich => other::World::Enrich,
                World::Sink => other::World::Sink,
            };
            let lang = if lang == Lang::Python { other::Lang::Python } else { other::Lang::Js };
            other::files(lang, &request.name, world)
        }
    };
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        if rel.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(dir)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        anyhow::bail!("{name:?} is not a plugin name: use lowercase letters, digits and '-', starting with a letter");
    }
    Ok(())
}

/// The ctrflow checkout holding `from` (a folder with `plugin-sdk/` and `wit/ctrflow.wit`).
pub fn find_checkout(from: &Path) -> Option<PathBuf> {
    absolute(from).ancestors().find(|d| is_checkout(d)).map(Path::to_path_buf)
}

/// Whether `dir` is a ctrflow checkout.
pub fn is_checkout(dir: &Path) -> bool {
    dir.join("plugin-sdk/Cargo.toml").is_file() && dir.join("wit/ctrflow.wit").is_file()
}

/// The checkout a request builds against: the one given, or the one it is created in.
pub fn checkout_for(request: &Request) -> anyhow::Result<PathBuf> {
    match &request.checkout {
        Some(c) if is_checkout(c) => Ok(absolute(c)),
        Some(c) => {
            anyhow::bail!("--ctrflow {}: not a ctrflow checkout (no plugin-sdk/ and wit/ctrflow.wit)", c.display())
        }
        None => find_checkout(&request.parent).ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not inside a ctrflow checkout, and the plugin SDK is used from one: \
                 pass --ctrflow <path to the checkout>, or create the plugin inside it",
                absolute(&request.parent).display()
            )
        }),
    }
}

/// `path` made absolute (against the working directory) and clean.
pub fn absolute(path: &Path) -> PathBuf {
    let joined =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    crate::config::clean(&joined)
}

/// `to` relative to `from` (both absolute and clean): what a path dependency is written as.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to) = (absolute(from), absolute(to));
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// `tag-channel` → `TagChannel`.
pub fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_types() {
        assert!(check_name("tag-channel").is_ok());
        assert!(check_name("Tag").is_err() && check_name("1x").is_err() && check_name("a_b").is_err());
        assert_eq!(type_name("tag-channel2"), "TagChannel2");
    }

    #[test]
    fn a_path_dependency_is_written_relative_to_the_project() {
        assert_eq!(
            relative(Path::new("/r/plugins/mine"), Path::new("/r/plugin-sdk")),
            PathBuf::from("../../plugin-sdk")
        );
        assert_eq!(relative(Path::new("/r/x"), Path::new("/r/x")), PathBuf::from("."));
    }

    #[test]
    fn this_repository_is_found_as_a_checkout() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(find_checkout(&here.join("src")), Some(absolute(&here.join(".."))));
    }
}
