//! Connectors: the outside world. Sources read it ([`generator`], [`file`], [`stdin`],
//! and Kinesis); sinks write it ([`sqlite`], [`file`], [`stdout`], and DynamoDB,
//! Firehose, Kinesis).
//!
//! A sink connector is a [`Writer`]: it writes a batch of items and says, per item,
//! whether it was written ([`crate::sink`] does the batching, encoding and
//! acknowledging). The set is closed, so a plain enum chooses between them.

pub mod aws;
pub mod file;
pub mod generator;
pub mod sqlite;
pub mod stdin;
pub mod stdout;

use crate::sink::{Item, Written};

/// A sink connector.
pub enum Writer {
    /// SQLite.
    Sqlite(sqlite::SqliteWriter),
    /// JSON-lines files.
    File(file::FileWriter),
    /// Standard output.
    Stdout(stdout::StdoutWriter),
    /// A DynamoDB table.
    Dynamodb(aws::dynamodb::DynamoWriter),
    /// A Firehose delivery stream.
    Firehose(aws::firehose::FirehoseWriter),
    /// A Kinesis data stream.
    Kinesis(aws::kinesis_sink::KinesisWriter),
}

impl Writer {
    /// Writes `items`; one result per item, in order.
    pub async fn write(&mut self, items: &[Item]) -> Vec<Written> {
        match self {
            Writer::Sqlite(w) => w.write(items).await,
            Writer::File(w) => w.write(items).await,
            Writer::Stdout(w) => w.write(items),
            Writer::Dynamodb(w) => w.write(items).await,
            Writer::Firehose(w) => w.write(items).await,
            Writer::Kinesis(w) => w.write(items).await,
        }
    }

    /// Flushes and closes.
    pub async fn close(&mut self) -> anyhow::Result<()> {
        match self {
            Writer::Sqlite(_) => Ok(()),
            Writer::File(w) => w.close(),
            Writer::Stdout(_) => Ok(()),
            Writer::Dynamodb(w) => {
                w.close();
                Ok(())
            }
            Writer::Firehose(_) | Writer::Kinesis(_) => Ok(()),
        }
    }

    /// The most records one write should carry, by the destination's own limits.
    pub fn max_records(&self) -> usize {
        match self {
            Writer::Sqlite(_) => 1000,
            Writer::File(_) => 1000,
            Writer::Stdout(_) => 256,
            // The writers chunk to their APIs' limits (25 items per BatchWriteItem, 500
            // records per PutRecordBatch / PutRecords) and send chunks concurrently.
            Writer::Dynamodb(_) | Writer::Firehose(_) | Writer::Kinesis(_) => 500,
        }
    }
}
