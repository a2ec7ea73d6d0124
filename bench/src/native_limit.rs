//! The **native limit** row of `cargo xtask bench throughput`: the least work any program
//! doing ctrflow's job must do per record, in plain Rust on one thread.
//!
//! It reads a JSON-lines file with a bounded buffer, parses each line with the parser
//! ctrflow uses (its own, into a `serde_json::Value`, the runtime's record type), serializes
//! the tree again with ctrflow's JSON writer and writes it as a line to the output file. The
//! parser, the writer and the allocator are the runtime's own source files, compiled in
//! here (`#[path]`), so the row moves with them and the bench needs no runtime. No plugins, no
//! routing, no SQLite, no acknowledgements: what is left when every feature of the runtime
//! costs nothing. It does not check that the records are contact records.
//!
//! `native-limit <input.jsonl> <output.jsonl>`; prints the record count on stdout.

use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::Context;

// The runtime's JSON module (and its parser, `json/parser.rs`) and allocator, from its
// source directory.
#[path = "../../runtime/src"]
mod runtime {
    pub mod alloc;
    #[allow(dead_code)]
    pub mod json;
}
use runtime::json;

// The same allocator as the `ctrflow` binary, so the rows differ in work, not in malloc.
#[global_allocator]
static GLOBAL: runtime::alloc::Allocator = runtime::alloc::Allocator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        anyhow::bail!("usage: native-limit <input.jsonl> <output.jsonl>");
    };
    let file = std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let out = std::fs::File::create(output).with_context(|| format!("cannot create {output}"))?;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let mut line = Vec::with_capacity(16 << 10);
    let mut text_out = Vec::with_capacity(16 << 10);
    let mut records: u64 = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let doc = json::parse(text).with_context(|| format!("line {} is not JSON", records + 1))?;
        text_out.clear();
        json::write_value(&mut text_out, &doc);
        text_out.push(b'\n');
        writer.write_all(&text_out)?;
        records += 1;
    }
    writer.flush()?;
    println!("{records}");
    Ok(())
}
