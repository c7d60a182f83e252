//! Decoding and validating reading messages: the per-message CPU cost of
//! ingest before any IO.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use ondol_model::wire::{DecodeLimits, decode_readings};

fn message(readings: usize, now_ms: i64) -> Vec<u8> {
    let items: Vec<String> = (0..readings)
        .map(|i| {
            format!(
                r#"{{"type":"heart_rate","value":{},"unit":"/min","ts":{}}}"#,
                60 + i % 40,
                now_ms - 60_000 + i as i64
            )
        })
        .collect();
    format!(r#"{{"msg_id":"m-1","readings":[{}]}}"#, items.join(",")).into_bytes()
}

fn decode(c: &mut Criterion) {
    let now = Timestamp::now();
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("decode_readings");
    for readings in [1usize, 10, 100] {
        let payload = message(readings, now.as_millisecond());
        group.throughput(Throughput::Elements(readings as u64));
        group.bench_function(format!("{readings}_per_message"), |b| {
            b.iter(|| decode_readings(std::hint::black_box(&payload), now, &limits))
        });
    }
    let senml = br#"[{"bn":"urn:dev:gw-1:","bt":1795737600,"n":"heart_rate","u":"/min","v":64},{"n":"spo2","u":"%","v":97,"t":1}]"#;
    group.throughput(Throughput::Elements(2));
    group.bench_function("senml_2_records", |b| {
        b.iter(|| decode_readings(std::hint::black_box(senml), now, &limits))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
