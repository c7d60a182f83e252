//! Batching judged messages, committing each batch in one transaction, and
//! answering with receipts once it is on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ondol_model::wire::{self, Receipt, ReceiptRejection};
use ondol_store::{Batch, BatchOutcome, Store};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::IngestConfig;
use crate::judge::{Inbound, ItemVerdict, Judge, ReceiptPlan};
use crate::roster_index::RosterIndex;
use crate::source::ReceiptSink;
use crate::telemetry::{self, IngestStats};

/// A batch with what is needed to answer each of its messages.
#[derive(Debug, Default)]
pub(crate) struct PendingBatch {
    batch: Batch,
    answers: Vec<PendingAnswer>,
    /// External-broker acks of every message in the batch, in receive order.
    acks: Vec<crate::source::AckToken>,
    /// When its first message was received (how old the batch is).
    first_received: Option<jiff::Timestamp>,
}

/// A message waiting for its batch to commit before its receipt can go out.
#[derive(Debug)]
struct PendingAnswer {
    plan: ReceiptPlan,
    items: Vec<ItemVerdict>,
    refused: Option<ondol_model::Rejection>,
    /// Where this message's readings start in `batch.readings`.
    first_reading: usize,
}

impl PendingBatch {
    /// Appends `later` (the next batch in receive order) to this one.
    fn absorb(&mut self, later: PendingBatch) {
        let offset = self.batch.readings.len();
        self.batch.readings.extend(later.batch.readings);
        self.batch.rejections.extend(later.batch.rejections);
        self.batch.statuses.extend(later.batch.statuses);
        self.answers
            .extend(later.answers.into_iter().map(|answer| PendingAnswer {
                first_reading: answer.first_reading + offset,
                ..answer
            }));
        self.acks.extend(later.acks);
        self.first_received = self.first_received.or(later.first_received);
    }

    fn is_empty(&self) -> bool {
        self.batch.readings.is_empty()
            && self.batch.rejections.is_empty()
            && self.batch.statuses.is_empty()
            && self.answers.is_empty()
            && self.acks.is_empty()
    }
}

/// Judges inbound messages and groups them into batches bounded by size and
/// age. Returns when `inbound` closes, after handing over the last batch.
pub(crate) async fn process(
    config: IngestConfig,
    mut inbound: mpsc::Receiver<Inbound>,
    batches: mpsc::Sender<PendingBatch>,
    roster: watch::Receiver<Arc<RosterIndex>>,
    stats: Arc<IngestStats>,
) {
    let mut judge = Judge::new(config.decode_limits()).with_rate_limit(config.rate_limit());
    let mut pending = PendingBatch::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match deadline {
            Some(at) => tokio::select! {
                message = inbound.recv() => message,
                _ = tokio::time::sleep_until(at) => {
                    deadline = None;
                    if batches.send(std::mem::take(&mut pending)).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            None => inbound.recv().await,
        };
        let Some(message) = next else { break };
        stats.message_received();
        pending.first_received.get_or_insert(message.received_at);
        let roster = roster.borrow().clone();
        add(&mut pending, judge.judge(&message, &roster), &stats);
        if let Some(ack) = message.ack {
            pending.acks.push(ack);
        }
        if deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + config.batch_max_delay);
        }
        if pending.batch.readings.len() >= config.batch_max_readings {
            deadline = None;
            if batches.send(std::mem::take(&mut pending)).await.is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = batches.send(pending).await;
    }
}

fn add(pending: &mut PendingBatch, verdict: crate::judge::Verdict, stats: &IngestStats) {
    for item in &verdict.items {
        if let ItemVerdict::Rejected(rejection) = item {
            stats.rejected(rejection.reason, 1);
        }
    }
    if let Some(refused) = &verdict.refused {
        stats.rejected(refused.reason, 1);
    }
    for row in &verdict.rejections {
        tracing::debug!(
            device = row.device_id.as_deref().unwrap_or("-"),
            reason = %row.reason,
            index = ?row.index,
            detail = %row.detail,
            "rejected"
        );
    }
    let first_reading = pending.batch.readings.len();
    if let Some(plan) = verdict.receipt {
        pending.answers.push(PendingAnswer {
            plan,
            items: verdict.items,
            refused: verdict.refused,
            first_reading,
        });
    }
    pending.batch.readings.extend(verdict.readings);
    pending.batch.rejections.extend(verdict.rejections);
    pending.batch.statuses.extend(verdict.status);
}

/// A committed batch on its way to [`announce`].
#[derive(Debug)]
pub(crate) struct StoredBatch {
    pending: PendingBatch,
    /// One flag per reading: newly stored (`true`) or a duplicate.
    inserted: Vec<bool>,
}

/// Commits batches in order and hands each committed one to [`announce`].
/// Batches waiting when a commit ends are merged into one of up to
/// `max_readings` readings.
/// Runs on a blocking thread; returns when the processor has handed over
/// its last batch. Announcing runs on a thread of its own so that the next
/// commit starts while the last batch's receipts go out.
pub(crate) fn write(
    mut store: Store,
    mut batches: mpsc::Receiver<PendingBatch>,
    max_readings: usize,
    stored: mpsc::Sender<StoredBatch>,
    feed_wake: Option<Arc<Notify>>,
    stats: Arc<IngestStats>,
) {
    // Lives as long as this loop: the last checkpoint runs after the last
    // batch.
    let _checkpointer = match store.tune_for_ingest() {
        Ok(checkpointer) => Some(checkpointer),
        Err(error) => {
            // Slower, not less safe: SQLite's own settings stay.
            tracing::warn!(error = %error, "cannot tune the store for ingest");
            None
        }
    };
    while let Some(mut pending) = batches.blocking_recv() {
        // Batches that queued up while the last commit ran go in one
        // transaction: under load, commits get larger instead of queueing,
        // and each page a commit writes holds more new rows.
        while pending.batch.readings.len() < max_readings {
            match batches.try_recv() {
                Ok(next) => pending.absorb(next),
                Err(_) => break,
            }
        }
        stats
            .backlog
            .commit_started(pending.first_received.unwrap_or_else(jiff::Timestamp::now));
        let Some(outcome) = commit(&mut store, &pending.batch, &stats) else {
            // Not committed: no receipt and no MQTT ack, so devices resend
            // (and an external broker redelivers after a reconnect); nothing
            // acknowledged is lost.
            stats.backlog.commit_failed();
            continue;
        };
        if let Some(wake) = &feed_wake {
            wake.notify_one();
        }
        stats.committed(
            outcome.accepted() as u64,
            outcome.duplicates() as u64,
            pending.batch.statuses.len() as u64,
        );
        let inserted = outcome.inserted;
        if stored
            .blocking_send(StoredBatch { pending, inserted })
            .is_err()
        {
            stats.backlog.commit_failed();
            tracing::error!("the receipt publisher stopped; committed batches go unreceipted");
        }
    }
}

/// Answers for committed batches, in commit order: publishes the
/// receipts, then acks the messages to an external
/// broker. Runs on a blocking thread until the writer is done.
pub(crate) fn announce(
    mut stored: mpsc::Receiver<StoredBatch>,
    mut receipts: ReceiptSink,
    stats: Arc<IngestStats>,
) {
    while let Some(StoredBatch { pending, inserted }) = stored.blocking_recv() {
        let PendingBatch {
            batch: _,
            answers,
            acks,
            first_received: _,
        } = pending;
        for answer in answers {
            let receipt = receipt_for(&answer, &inserted);
            let topic = wire::receipts_topic(&answer.plan.device);
            match receipts.publish(topic, receipt.to_json()) {
                Ok(()) => stats.receipt_published(),
                Err(error) => {
                    tracing::warn!(error = %error, device = %answer.plan.device, "cannot publish receipt");
                }
            }
        }
        // Only now, with the batch on disk, may the broker forget it.
        let owed = acks.len();
        let dropped = receipts.ack(acks);
        stats.backlog.announced();
        if dropped > 0 {
            tracing::info!(
                dropped,
                owed,
                "acks for an earlier connection dropped; the broker redelivers those messages"
            );
        }
    }
}

/// A transient commit failure that lasts through this many retries (about
/// 6 s of backing off) makes the store unwritable (a `system_outage`); a
/// lock held for a moment by another connection does not.
const RETRIES_BEFORE_OUTAGE: u32 = 7;

/// Commits with retries while the failure is transient. `None` means the
/// batch could not be stored. A failure that persists raises the store's
/// `system_outage` condition; the next commit that succeeds clears it.
fn commit(store: &mut Store, batch: &Batch, stats: &IngestStats) -> Option<BatchOutcome> {
    use ondol_model::condition::OutageCause;
    let mut wait = Duration::from_millis(50);
    let mut retries = 0u32;
    loop {
        let started = Instant::now();
        match store.commit_batch(batch) {
            Ok(outcome) => {
                metrics::histogram!(telemetry::BATCH_COMMIT_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                telemetry::clear_condition(&stats.store, OutageCause::StoreUnwritable);
                return Some(outcome);
            }
            Err(error) if error.is_retryable() => {
                metrics::counter!(telemetry::STORE_ERRORS, "kind" => "transient").increment(1);
                tracing::warn!(error = %error, retry_in = ?wait, "batch commit failed; retrying");
                retries += 1;
                if retries >= RETRIES_BEFORE_OUTAGE {
                    telemetry::raise_condition(
                        &stats.store,
                        OutageCause::StoreUnwritable,
                        "batch commits keep failing",
                    );
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                telemetry::raise_condition(
                    &stats.store,
                    OutageCause::StoreUnwritable,
                    "a batch commit failed permanently",
                );
                metrics::counter!(telemetry::STORE_ERRORS, "kind" => "permanent").increment(1);
                tracing::error!(
                    error = %error,
                    readings = batch.readings.len(),
                    "batch commit failed permanently; its messages get no receipt and will be resent"
                );
                return None;
            }
        }
    }
}

fn receipt_for(answer: &PendingAnswer, inserted: &[bool]) -> Receipt {
    let mut receipt = Receipt {
        msg_id: answer.plan.msg_id.clone(),
        accepted: 0,
        duplicates: 0,
        rejected: Vec::new(),
        error: answer.refused.clone().map(Into::into),
    };
    for (index, item) in answer.items.iter().enumerate() {
        match item {
            ItemVerdict::Pending(position) => match inserted.get(answer.first_reading + position) {
                Some(true) => receipt.accepted += 1,
                Some(false) => receipt.duplicates += 1,
                None => {}
            },
            ItemVerdict::Rejected(rejection) => receipt.rejected.push(ReceiptRejection {
                index,
                reason: rejection.reason,
                detail: rejection.detail.clone(),
            }),
        }
    }
    receipt
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use ondol_model::condition::OutageCause;
    use ondol_model::reading::{ReadingType, ReadingValue};
    use ondol_model::{DeviceId, Reading, ResidentId};
    use ondol_store::{NewReading, StoreError, TimeseriesSink};

    use super::*;

    /// A sink that refuses every write while `failing` is set, like a
    /// store whose disk is gone.
    #[derive(Debug)]
    struct Refusing(Arc<AtomicBool>);

    impl TimeseriesSink for Refusing {
        fn write(
            &mut self,
            _tx: &rusqlite::Transaction<'_>,
            readings: &[NewReading],
        ) -> Result<Vec<bool>, StoreError> {
            if self.0.load(Ordering::SeqCst) {
                return Err(StoreError::Sink {
                    detail: "refused".into(),
                    retryable: false,
                });
            }
            Ok(vec![true; readings.len()])
        }
    }

    fn one_reading() -> Batch {
        let ts = jiff::Timestamp::from_second(1_800_000_000).expect("valid");
        let local = ts.to_zoned(jiff::tz::TimeZone::UTC);
        Batch {
            readings: vec![NewReading {
                device_id: DeviceId::new("gw-1").expect("id"),
                resident_id: ResidentId::new("r-1").expect("id"),
                reading: Reading {
                    reading_type: ReadingType::Steps,
                    value: ReadingValue::Number(10.0),
                    sensor: None,
                    ts,
                },
                received_at: ts,
                local_date: local.date(),
                local_hour: 0,
                checkin_in_window: false,
                counts_as_activity: true,
            }],
            ..Batch::default()
        }
    }

    /// One message with a receipt plan and a reading per `ts` (seconds).
    fn message(msg_id: &str, seconds: &[i64]) -> PendingBatch {
        let mut batch = Batch::default();
        for &second in seconds {
            let mut reading = one_reading().readings.remove(0);
            reading.reading.ts = jiff::Timestamp::from_second(second).expect("valid");
            batch.readings.push(reading);
        }
        PendingBatch {
            batch,
            answers: vec![PendingAnswer {
                plan: ReceiptPlan {
                    device: DeviceId::new("gw-1").expect("id"),
                    msg_id: msg_id.into(),
                },
                items: (0..seconds.len()).map(ItemVerdict::Pending).collect(),
                refused: None,
                first_reading: 0,
            }],
            acks: Vec::new(),
            first_received: None,
        }
    }

    /// Batches queued while a commit ran are committed as one, and each
    /// message's receipt still counts its own readings (the second
    /// message resends the first one's first reading: a duplicate).
    #[test]
    fn queued_batches_commit_together_with_the_right_receipts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("ondol.db")).expect("store");
        let (batch_tx, batch_rx) = mpsc::channel(8);
        let (stored_tx, mut stored_rx) = mpsc::channel(8);
        batch_tx
            .try_send(message("a", &[1_800_000_000, 1_800_000_001]))
            .expect("room");
        batch_tx
            .try_send(message("b", &[1_800_000_000]))
            .expect("room");
        batch_tx
            .try_send(message("c", &[1_800_000_002]))
            .expect("room");
        drop(batch_tx);
        // Room for three readings: a and b merge, c commits on its own.
        write(
            store,
            batch_rx,
            3,
            stored_tx,
            None,
            Arc::new(IngestStats::default()),
        );

        let first = stored_rx.try_recv().expect("a committed batch");
        assert_eq!(first.inserted, vec![true, true, false]);
        let receipts: Vec<Receipt> = first
            .pending
            .answers
            .iter()
            .map(|answer| receipt_for(answer, &first.inserted))
            .collect();
        assert_eq!(receipts[0].msg_id, "a");
        assert_eq!((receipts[0].accepted, receipts[0].duplicates), (2, 0));
        assert_eq!(receipts[1].msg_id, "b");
        assert_eq!((receipts[1].accepted, receipts[1].duplicates), (0, 1));
        let second = stored_rx.try_recv().expect("c on its own");
        assert_eq!(second.inserted, vec![true]);
        assert!(stored_rx.try_recv().is_err());
    }

    #[test]
    fn a_failing_commit_raises_store_unwritable_and_the_next_success_clears_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let failing = Arc::new(AtomicBool::new(true));
        let mut store = Store::open_with_sink(
            &dir.path().join("ondol.db"),
            Box::new(Refusing(failing.clone())),
        )
        .expect("store");
        let stats = IngestStats::default();
        assert!(commit(&mut store, &one_reading(), &stats).is_none());
        let outage = stats.store.get().expect("raised");
        assert_eq!(outage.cause, OutageCause::StoreUnwritable);
        failing.store(false, Ordering::SeqCst);
        assert!(commit(&mut store, &one_reading(), &stats).is_some());
        assert_eq!(stats.store.get(), None);
    }
}
