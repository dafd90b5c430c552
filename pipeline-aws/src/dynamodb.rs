//! The workflow engine's [`JobStore`] on DynamoDB, so several engines (containers or
//! functions) share one store. One item per job: its position and the indexes' keys as plain
//! attributes, and its message, outputs, metadata, last error and history as one
//! deflate-compressed JSON document (`body`), which keeps a finished job's item under the
//! 1 KB a write unit covers. Every step is a conditional `PutItem` on the revision it read (a
//! new job on `attribute_not_exists`), and a step that loses the race is decided again from
//! the winner's item. Three sparse, keys-only indexes answer the timers and the listing:
//! `due` (jobs waiting for a timer, by state and due time), `unsent` (attempts stored but not
//! known to be in the queue) and `created` (jobs by month of creation, newest first).
//!
//! DynamoDB bills capacity units, not requests: each call adds the units it consumes (from
//! the items' sizes, by DynamoDB's published sizing rules) to
//! [`telemetry::DYNAMODB_UNITS`](pipeline_core::telemetry::DYNAMODB_UNITS).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use pipeline_core::job_store::{Change, Decide, JobStore, StoreError, StoredJob};
use pipeline_core::telemetry;
use protocol::JobError;
use protocol::job::{HistoryEntry, JobRecord, JobState};
use protocol::message::{Job, Output, SourceMetadata};
use protocol::time::rfc3339;
use protocol::workflow::{Effect, Ignored, Position};

use crate::error::AwsError;

type Item = HashMap<String, AttributeValue>;

/// Index of jobs waiting for a timer: `due_state` (only while not ended) and `due_at`.
pub const DUE_INDEX: &str = "due";
/// Index of attempts stored but not known to be sent: `unsent` ("1") and `updated_at`.
pub const UNSENT_INDEX: &str = "unsent";
/// Index of jobs by creation: `created_month` (`YYYY-MM`) and `created_at`.
pub const CREATED_INDEX: &str = "created";

/// How many times a step is decided again after losing a race before the store gives up.
const MAX_RACES: usize = 16;
/// How many months back the listing looks for jobs.
const LIST_MONTHS: usize = 13;

/// Jobs in the DynamoDB table `table`.
#[derive(Clone, Debug)]
pub struct DynamoJobs {
    client: Client,
    table: String,
}

fn err<E>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| StoreError(AwsError::from_sdk(operation, &e).to_string())
}

fn bad(what: &str) -> StoreError {
    StoreError(format!("a stored job is unreadable: {what}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// What an item keeps compressed: everything but its position and index keys.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Body {
    job: Option<Job>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<Output>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<SourceMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<JobError>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

fn read_body(item: &Item) -> Result<Body, StoreError> {
    let Some(bytes) = item.get("body").and_then(|b| b.as_b().ok()) else { return Ok(Body::default()) };
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(bytes.as_ref()).read_to_end(&mut json).map_err(|e| bad(&format!("body: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| bad(&format!("body: {e}")))
}

fn write_body(body: &Body) -> Result<AttributeValue, StoreError> {
    let json = serde_json::to_vec(body).map_err(|e| StoreError(e.to_string()))?;
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate.write_all(&json).map_err(|e| StoreError(e.to_string()))?;
    let bytes = deflate.finish().map_err(|e| StoreError(e.to_string()))?;
    Ok(AttributeValue::B(Blob::new(bytes)))
}

/// The job and position an item holds.
fn stored(item: &Item, body: Body) -> Result<StoredJob, StoreError> {
    let state = get_s(item, "state").and_then(JobState::parse).ok_or_else(|| bad("state"))?;
    let attempt = get_n(item, "attempt").and_then(|a| u32::try_from(a).ok()).ok_or_else(|| bad("attempt"))?;
    let mut job = body.job.ok_or_else(|| bad("job"))?;
    job.attempt = attempt;
    Ok(StoredJob { job, position: Position { state, attempt, started_at: get_n(item, "started_at") } })
}

fn record(item: &Item, with_history: bool) -> Result<JobRecord, StoreError> {
    let mut body = read_body(item)?;
    let (outputs, metadata, error) = (std::mem::take(&mut body.outputs), body.metadata.take(), body.error.take());
    let history = if with_history { std::mem::take(&mut body.history) } else { Vec::new() };
    let StoredJob { job, position } = stored(item, body)?;
    Ok(JobRecord {
        job_id: job.job_id,
        state: position.state,
        attempts: position.attempt,
        source_bucket: job.source_bucket,
        source_key: job.source_key,
        destination_bucket: job.destination_bucket,
        renditions: job.renditions,
        created_at: rfc3339(get_n(item, "created_at").unwrap_or_default()),
        updated_at: rfc3339(get_n(item, "updated_at").unwrap_or_default()),
        outputs,
        metadata,
        error,
        history,
    })
}

/// The item after `change`, from the item before it (`None` for a new job).
fn next_item(old: Option<&Item>, change: &Change, now: i64) -> Result<Item, StoreError> {
    let t = &change.transition;
    let mut item = old.cloned().unwrap_or_default();
    let mut body = old.map(read_body).transpose()?.unwrap_or_default();
    let rev = old.and_then(|o| get_n(o, "rev")).unwrap_or(0) + 1;
    item.insert("job_id".into(), s(&change.job.job_id));
    item.insert("rev".into(), n(rev));
    item.insert("state".into(), s(t.to.state.as_str()));
    item.insert("attempt".into(), n(t.to.attempt));
    item.insert("due_at".into(), n(t.due_at));
    item.insert("updated_at".into(), n(now));
    match t.to.started_at {
        Some(at) => item.insert("started_at".into(), n(at)),
        None => item.remove("started_at"),
    };
    if change.insert || change.replace_job || body.job.is_none() {
        body.job = Some(change.job.clone());
    }
    if change.insert {
        item.insert("created_at".into(), n(now));
        item.insert("created_month".into(), s(&rfc3339(now)[..7]));
    }
    if let Some(error) = &t.error {
        body.error = Some(error.clone());
    }
    if let Some((outputs, metadata)) = &change.outputs {
        body.outputs.clone_from(outputs);
        body.metadata.clone_from(metadata);
        body.error = None;
    }
    body.history.extend(t.history.iter().cloned());
    item.insert("body".into(), write_body(&body)?);
    // The sparse index keys: waiting for a timer while not ended; unsent until the queue has it.
    if t.to.state.is_terminal() {
        item.remove("due_state");
    } else {
        item.insert("due_state".into(), s(t.to.state.as_str()));
    }
    if t.effects.contains(&Effect::SendJob) {
        item.insert("unsent".into(), s("1"));
    } else {
        item.remove("unsent");
    }
    Ok(item)
}

impl DynamoJobs {
    /// The jobs in `table` (see [`DynamoJobs::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table with its indexes (on-demand billing), or leaves an existing one,
    /// and waits until it is active.
    ///
    /// # Errors
    /// A service failure.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| StoreError(e.to_string()))
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(t).build().map_err(|e| StoreError(e.to_string()))
        };
        let index = |name: &str, hash: &str, range: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .map_err(|e| StoreError(e.to_string()))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("job_id", KeyType::Hash)?)
            .attribute_definitions(attr("job_id", ScalarAttributeType::S)?)
            .attribute_definitions(attr("due_state", ScalarAttributeType::S)?)
            .attribute_definitions(attr("due_at", ScalarAttributeType::N)?)
            .attribute_definitions(attr("unsent", ScalarAttributeType::S)?)
            .attribute_definitions(attr("updated_at", ScalarAttributeType::N)?)
            .attribute_definitions(attr("created_month", ScalarAttributeType::S)?)
            .attribute_definitions(attr("created_at", ScalarAttributeType::N)?)
            .global_secondary_indexes(index(DUE_INDEX, "due_state", "due_at")?)
            .global_secondary_indexes(index(UNSENT_INDEX, "unsent", "updated_at")?)
            .global_secondary_indexes(index(CREATED_INDEX, "created_month", "created_at")?)
            .send()
            .await;
        if let Err(e) = created {
            let e = AwsError::from_sdk("CreateTable", &e);
            if !e.has_code(&["ResourceInUseException"]) {
                return Err(StoreError(e.to_string()));
            }
        }
        for _ in 0..120 {
            let table =
                self.client.describe_table().table_name(&self.table).send().await.map_err(err("DescribeTable"))?;
            let status = table.table().and_then(|t| t.table_status());
            if status.is_some_and(|s| s.as_str() == "ACTIVE") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError(format!("table {} did not become active", self.table)))
    }

    async fn read(&self, job_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("job_id", s(job_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(err("GetItem"))?;
        let item = out.item;
        count_read("GetItem", item.as_ref().map_or(0, item_size));
        Ok(item)
    }

    /// Ids from one index query, in its order.
    async fn query_ids(
        &self,
        index: &str,
        condition: &str,
        values: Item,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(err("Query"))?;
        let items = out.items.unwrap_or_default();
        count_read("Query", items.iter().map(|i| item_size(i) + INDEX_ENTRY_OVERHEAD).sum());
        Ok(items.iter().filter_map(|i| get_s(i, "job_id").map(str::to_owned)).collect())
    }
}

#[async_trait]
impl JobStore for DynamoJobs {
    async fn update(
        &self,
        job_id: &str,
        now: i64,
        _durable: bool,
        decide: Decide,
    ) -> Result<Result<Change, Ignored>, StoreError> {
        // DynamoDB acknowledges a write once it is stored durably in several zones.
        for _ in 0..MAX_RACES {
            let old = self.read(job_id).await?;
            let current = old.as_ref().map(|o| stored(o, read_body(o)?)).transpose()?;
            let change = match decide(current) {
                Ok(change) => change,
                Err(ignored) => return Ok(Err(ignored)),
            };
            let item = next_item(old.as_ref(), &change, now)?;
            let units = write_units(old.as_ref(), &item);
            let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
            let put = match old.as_ref().and_then(|o| get_n(o, "rev")) {
                None => put.condition_expression("attribute_not_exists(job_id)"),
                Some(rev) => put.condition_expression("rev = :rev").expression_attribute_values(":rev", n(rev)),
            };
            match put.send().await {
                Ok(_) => {
                    count_write("PutItem", units);
                    return Ok(Ok(change));
                }
                Err(e) => {
                    let e = AwsError::from_sdk("PutItem", &e);
                    if !e.has_code(&["ConditionalCheckFailedException"]) {
                        return Err(StoreError(e.to_string()));
                    }
                    // A failed condition still costs a write.
                    count_write("PutItem", 1);
                    tracing::debug!(job_id, "another engine changed the job first; deciding again");
                }
            }
        }
        Err(StoreError(format!("job {job_id}: {MAX_RACES} engines in a row changed it first")))
    }

    async fn mark_sent(&self, job_id: &str, attempt: u32) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("job_id", s(job_id))
            .update_expression("REMOVE unsent")
            .condition_expression("attempt = :a AND attribute_exists(unsent)")
            .expression_attribute_values(":a", n(attempt))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => {
                // The item (its size is the write's) and the unsent index entry it leaves.
                count_write("UpdateItem", units_of(out.attributes.as_ref().map_or(0, item_size), 1024) + 1);
                Ok(())
            }
            Err(e) => {
                let e = AwsError::from_sdk("UpdateItem", &e);
                if e.has_code(&["ConditionalCheckFailedException"]) {
                    count_write("UpdateItem", 1);
                    return Ok(());
                }
                Err(StoreError(e.to_string()))
            }
        }
    }

    async fn unsent(&self, before: i64) -> Result<Vec<Job>, StoreError> {
        let values = HashMap::from([(":one".to_owned(), s("1")), (":before".to_owned(), n(before))]);
        let ids = self.query_ids(UNSENT_INDEX, "unsent = :one AND updated_at < :before", values, true, 100).await?;
        let mut jobs = Vec::new();
        for id in ids {
            if let Some(item) = self.read(&id).await? {
                if item.contains_key("unsent") {
                    jobs.push(stored(&item, read_body(&item)?)?.job);
                }
            }
        }
        Ok(jobs)
    }

    async fn due(&self, state: JobState, now: i64) -> Result<Vec<String>, StoreError> {
        let values = HashMap::from([(":state".to_owned(), s(state.as_str())), (":now".to_owned(), n(now))]);
        self.query_ids(DUE_INDEX, "due_state = :state AND due_at <= :now", values, true, 100).await
    }

    async fn get(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.read(job_id).await?.map(|item| record(&item, true)).transpose()
    }

    async fn recent(&self, limit: usize, now: i64) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        let mut month = rfc3339(now)[..7].to_owned();
        for _ in 0..LIST_MONTHS {
            if out.len() >= limit {
                break;
            }
            let values = HashMap::from([(":m".to_owned(), s(&month))]);
            let ids = self.query_ids(CREATED_INDEX, "created_month = :m", values, false, limit - out.len()).await?;
            for id in ids {
                if let Some(item) = self.read(&id).await? {
                    out.push(record(&item, false)?);
                }
            }
            month = previous_month(&month);
        }
        Ok(out)
    }
}

/// `YYYY-MM` of the month before `month`.
fn previous_month(month: &str) -> String {
    let (y, m) = month.split_once('-').unwrap_or(("1970", "01"));
    let (y, m): (i32, u32) = (y.parse().unwrap_or(1970), m.parse().unwrap_or(1));
    if m <= 1 { format!("{:04}-12", y - 1) } else { format!("{y:04}-{:02}", m - 1) }
}

// What DynamoDB bills: sizes by its published rules, units as it rounds them.

/// Bytes an index entry adds to its projected attributes.
const INDEX_ENTRY_OVERHEAD: usize = 100;
/// The indexes and the attributes that place an item in them.
const INDEXES: [(&str, &str); 3] = [("due_state", "due_at"), ("unsent", "updated_at"), ("created_month", "created_at")];

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        // Numbers: about one byte per two significant digits, plus one.
        AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 1,
    }
}

/// An item's size as DynamoDB counts it: names and values.
fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn units_of(bytes: usize, unit: usize) -> u64 {
    u64::try_from(bytes.div_ceil(unit).max(1)).unwrap_or(u64::MAX)
}

/// Write units of replacing `old` by `new`: the larger item, and each index entry written
/// or removed (a moved entry is both).
fn write_units(old: Option<&Item>, new: &Item) -> u64 {
    let table = units_of(old.map_or(0, item_size).max(item_size(new)), 1024);
    let key = |item: Option<&Item>, (hash, range): (&str, &str)| {
        let item = item?;
        Some((item.get(hash)?.clone(), item.get(range)?.clone()))
    };
    let index: u64 = INDEXES
        .iter()
        .map(|&ix| match (key(old, ix), key(Some(new), ix)) {
            (Some(a), Some(b)) if a == b => 0,
            (Some(_), Some(_)) => 2,
            (None, None) => 0,
            _ => 1,
        })
        .sum();
    table + index
}

fn count_write(operation: &'static str, units: u64) {
    metrics::counter!(telemetry::DYNAMODB_UNITS, "kind" => "write", "operation" => operation).increment(units);
}

/// Read units: 4 KB each, strongly consistent; an eventually consistent read costs half,
/// rounded up here to a whole unit per request.
fn count_read(operation: &'static str, bytes: usize) {
    let units = units_of(bytes, 4096);
    metrics::counter!(telemetry::DYNAMODB_UNITS, "kind" => "read", "operation" => operation).increment(units);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_go_back_across_years() {
        assert_eq!(previous_month("2026-12"), "2026-11");
        assert_eq!(previous_month("2026-01"), "2025-12");
    }

    #[test]
    fn units_follow_the_item_size_and_the_index_entries() {
        let mut old = Item::from([("job_id".to_owned(), s("a")), ("due_state".to_owned(), s("ProcessImage"))]);
        old.insert("due_at".into(), n(5));
        // Same index key: only the item.
        assert_eq!(write_units(Some(&old), &old), 1);
        // The entry moves: removed and written.
        let mut moved = old.clone();
        moved.insert("due_at".into(), n(6));
        assert_eq!(write_units(Some(&old), &moved), 3);
        // A new item in the index, over 1 KB.
        let mut big = old.clone();
        big.insert("job".into(), s("x".repeat(1500)));
        assert_eq!(write_units(None, &big), 3);
    }
}
