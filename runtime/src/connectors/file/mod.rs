//! Files: the `file` source (JSON lines, a JSON array, or concatenated JSON documents;
//! gzip by extension; resumable) and the `file` sink (JSON lines, date-partitioned paths,
//! rotation).

mod sink;
mod source;

pub use sink::FileWriter;
pub use source::{FilePosition, Piece, run, split_documents};
