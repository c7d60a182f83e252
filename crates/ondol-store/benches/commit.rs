//! Committing an ingest batch: one SQLite transaction with dedupe, rollups
//! and activity, on a real file with `synchronous = FULL` (so the figure
//! includes the fsync a receipt waits for).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::civil::date;
use ondol_model::reading::{Reading, ReadingType, ReadingValue};
use ondol_model::{DeviceId, ResidentId};
use ondol_store::{Batch, NewReading, Store};

fn batch(size: usize, start_ms: i64) -> Batch {
    let readings = (0..size)
        .map(|i| NewReading {
            device_id: DeviceId::new(format!("gw-{:04}", i % 500))
                .unwrap_or_else(|_| unreachable!()),
            resident_id: ResidentId::new(format!("r-{:04}", i % 500))
                .unwrap_or_else(|_| unreachable!()),
            reading: Reading {
                reading_type: ReadingType::HeartRate,
                value: ReadingValue::Number(70.0),
                sensor: None,
                ts: Timestamp::from_millisecond(start_ms + i as i64)
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            },
            received_at: Timestamp::now(),
            local_date: date(2026, 11, 27),
            local_hour: 9,
            checkin_in_window: false,
            counts_as_activity: false,
        })
        .collect();
    Batch {
        readings,
        ..Batch::default()
    }
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let mut store =
        Store::open(&dir.path().join("ondol.db")).unwrap_or_else(|e| panic!("open: {e}"));
    let mut next_ms = Timestamp::now().as_millisecond() - 86_400_000;
    let mut group = c.benchmark_group("commit_batch");
    group.sample_size(20);
    for size in [1usize, 100, 2_000] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("{size}_new_readings"), |b| {
            b.iter_batched(
                || {
                    next_ms += size as i64;
                    batch(size, next_ms)
                },
                |batch| store.commit_batch(&batch),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
