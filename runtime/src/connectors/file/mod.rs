//! Files: the `file` source (JSON lines, a JSON array, or concatenated JSON documents,
//! streamed; gzip by extension; resumable by file identity), its [`framing`], and the `file`
//! sink (JSON lines, date-partitioned paths, rotation, durable before acknowledged).

pub mod framing;
mod sink;
mod source;

pub use framing::{Framer, Piece, split_documents};
pub use sink::{FileSink, FileWriter};
pub use source::{FileSource, FilesCheckpoint, files};
