//! Router tests: the whole app driven with `oneshot`, per role, allowed and
//! refused, over an in-memory store with a manual clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tower::ServiceExt;

use ondol_model::alert::{AlertEvent, Cause, Outcome, Rule, Severity, Subject};
use ondol_model::reading::{CheckinValue, ReadingType, ReadingValue};
use ondol_model::{DeviceId, ManualClock, Reading, ResidentId, StaffId};
use ondol_store::alerts::{AlertUpdate, NewAlert};
use ondol_store::{Batch, NewReading, StatusUpdate, Store};

use crate::*;

const ROSTER: &str = r#"
[[residents]]
id = "r-1"
name = "Test Resident One"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-01"

[[residents]]
id = "r-2"
name = "Test Resident Two"
timezone = "Asia/Seoul"
region = "gangjin"
enrolled_from = "2026-01-01"
caseworker = "cw-02"

[[residents]]
id = "r-3"
name = "Test Resident Three"
timezone = "Europe/Lisbon"
region = "alentejo"
enrolled_from = "2026-01-01"
caseworker = "cw-02"
away = [{ from = "2026-11-20", until = "2026-12-05", reason = "family" }]

[[devices]]
id = "gw-1"
resident = "r-1"
kind = "gateway"

[[devices]]
id = "wr-1"
resident = "r-1"
kind = "wearable"

[[devices]]
id = "gw-2"
resident = "r-2"
kind = "gateway"

[[staff]]
id = "cw-01"
name = "Park Ji-hoon"
role = "caseworker"

[[staff]]
id = "cw-02"
name = "Choi Min-seo"
role = "caseworker"

[[staff]]
id = "sup-g"
name = "Supervisor Gangjin"
role = "supervisor"
region = "gangjin"

[[staff]]
id = "ev-1"
name = "Evaluator"
role = "evaluator"

[[staff]]
id = "adm-1"
name = "Admin"
role = "admin"
"#;

/// 2026-11-27 00:00:00 UTC.
fn base() -> Timestamp {
    Timestamp::from_second(1_795_737_600).unwrap()
}

fn at(minutes: i64) -> Timestamp {
    base() + SignedDuration::from_mins(minutes)
}

struct Fixture {
    state: ApiState,
    clock: ManualClock,
    pipeline: Arc<AtomicBool>,
    alarm_r1: i64,
    caution_r1: i64,
    alert_r2: i64,
    system: i64,
}

fn reading(
    device: &str,
    resident: &str,
    kind: ReadingType,
    value: ReadingValue,
    ts: Timestamp,
) -> NewReading {
    let local = ts.to_zoned(TimeZone::get("Asia/Seoul").unwrap());
    let reading = Reading {
        reading_type: kind,
        value,
        sensor: None,
        ts,
    };
    NewReading {
        device_id: DeviceId::new(device).unwrap(),
        resident_id: ResidentId::new(resident).unwrap(),
        counts_as_activity: reading.shows_activity(),
        checkin_in_window: false,
        reading,
        received_at: ts,
        local_date: local.date(),
        local_hour: u8::try_from(local.hour()).unwrap(),
    }
}

/// An alert about `resident` (or a system alert) with cause `no_checkin`.
fn new_alert(
    rule: Rule,
    resident: Option<&str>,
    severity: Severity,
    opened: Timestamp,
) -> NewAlert {
    NewAlert {
        rule,
        subject: resident.map_or(Subject::System, |r| {
            Subject::Resident(ResidentId::new(r).unwrap())
        }),
        resident_id: resident.map(|r| ResidentId::new(r).unwrap()),
        device_id: None,
        episode: format!("{opened}"),
        severity,
        cause: Cause::NoCheckin,
        detail: None,
        local_date: None,
        opened_at: opened,
        next_escalation_at: None,
    }
}

fn raise_new(store: &mut Store, new: &NewAlert) -> i64 {
    match store.raise_alert(new, |_| Vec::new()).unwrap() {
        ondol_store::alerts::Raised::New(row) => row.id,
        other => panic!("not raised: {other:?}"),
    }
}

fn raise(
    store: &mut Store,
    rule: Rule,
    resident: Option<&str>,
    severity: Severity,
    opened: Timestamp,
) -> i64 {
    raise_new(store, &new_alert(rule, resident, severity, opened))
}

/// A different number on every call (the test issuer's secrets).
fn rand_like() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn fixture() -> Fixture {
    fixture_with(HttpConfig::default())
}

fn fixture_with(config: HttpConfig) -> Fixture {
    let mut store = Store::open_in_memory().unwrap();
    let roster = ondol_store::parse_roster(ROSTER, "test.toml").unwrap();
    store.import_roster(&roster).unwrap();
    let mut readings = Vec::new();
    for i in 0..5 {
        readings.push(reading(
            "wr-1",
            "r-1",
            ReadingType::HeartRate,
            ReadingValue::Number(70.0 + f64::from(i)),
            at(i64::from(i) * 10),
        ));
    }
    readings.push(reading(
        "wr-1",
        "r-1",
        ReadingType::BloodPressure,
        ReadingValue::BloodPressure {
            systolic: 128.0,
            diastolic: 82.0,
        },
        at(5),
    ));
    readings.push(reading(
        "gw-1",
        "r-1",
        ReadingType::Checkin,
        ReadingValue::Checkin(CheckinValue::Ok),
        at(6),
    ));
    readings.push(reading(
        "gw-2",
        "r-2",
        ReadingType::HeartRate,
        ReadingValue::Number(90.0),
        at(7),
    ));
    store
        .commit_batch(&Batch {
            readings,
            ..Batch::default()
        })
        .unwrap();
    let caution_r1 = raise(
        &mut store,
        Rule::Inactivity,
        Some("r-1"),
        Severity::Caution,
        at(1),
    );
    let alarm_r1 = raise(
        &mut store,
        Rule::MissedCheckin,
        Some("r-1"),
        Severity::Alarm,
        at(2),
    );
    let alert_r2 = raise(
        &mut store,
        Rule::MissedCheckin,
        Some("r-2"),
        Severity::Alarm,
        at(3),
    );
    let system = raise(
        &mut store,
        Rule::SystemOutage,
        None,
        Severity::Critical,
        at(4),
    );
    let clock = ManualClock::new(at(60));
    let pipeline = Arc::new(AtomicBool::new(false));
    // Each staff member's token is "token-<id>" (for the admin tests too).
    let token_source: TokenSource = Arc::new(|staff: &[ondol_model::roster::Staff]| {
        Tokens::new(
            staff
                .iter()
                .map(|s| (s.id.clone(), format!("token-{}", s.id))),
        )
    });
    let tokens = token_source(&roster.staff);
    let state = ApiState::new(ApiParts {
        stores: vec![store],
        tokens,
        token_source: Some(token_source),
        clock: Arc::new(clock.clone()),
        readings: ReadingsBackend::Embedded,
        metrics: None,
        pipeline_running: pipeline.clone(),
        pseudonym_key: Some(ondol_report::PseudonymKey::new(vec![7u8; 32]).unwrap()),
        // The binary's issuer hashes with Argon2id; here the "hash" names
        // the secret so a test can tell which one the store holds.
        secret_issuer: Some(Arc::new(|| {
            let secret = format!("{:064x}", rand_like());
            Ok(crate::IssuedSecret {
                hash: format!("test-hash-of-{secret}"),
                secret,
            })
        })),
        config,
    });
    Fixture {
        state,
        clock,
        pipeline,
        alarm_r1,
        caution_r1,
        alert_r2,
        system,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_owned()
    }
}

async fn call(
    state: &ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = app(state.clone())
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(state: &ApiState, uri: &str, token: &str) -> Answer {
    call(state, "GET", uri, Some(token), None).await
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_everywhere() {
    let f = fixture();
    for uri in [
        "/api/v1/me",
        "/api/v1/alerts",
        "/api/v1/alerts/1",
        "/api/v1/residents",
        "/api/v1/residents/r-1",
        "/api/v1/residents/r-1/readings",
        "/api/v1/overview",
        "/api/v1/reports/utilisation?from=2026-01-01&to=2026-01-31",
    ] {
        for token in [None, Some("wrong"), Some("")] {
            let answer = call(&f.state, "GET", uri, token, None).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri} {token:?}");
            assert_eq!(answer.error_code(), "unauthorized");
            assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    let answer = call(
        &f.state,
        "POST",
        "/api/v1/alerts/1/ack",
        Some("wrong"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn me_names_the_caller() {
    let f = fixture();
    let answer = get(&f.state, "/api/v1/me", "token-cw-01").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"id": "cw-01", "name": "Park Ji-hoon", "role": "caseworker", "region": null})
    );
    let sup = get(&f.state, "/api/v1/me", "token-sup-g").await.json();
    assert_eq!(sup["region"], "gangjin");
}

#[tokio::test]
async fn a_caseworker_sees_only_their_residents_and_others_are_404_like_missing_ones() {
    let f = fixture();
    let board = get(&f.state, "/api/v1/residents", "token-cw-01").await;
    assert_eq!(board.status, StatusCode::OK);
    let items = board.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let r1 = &items[0];
    assert_eq!(r1["id"], "r-1");
    assert_eq!(r1["name"], "Test Resident One");
    assert_eq!(r1["timezone"], "Asia/Seoul");
    assert_eq!(r1["caseworker"], "cw-01");
    assert_eq!(r1["open_alerts"], 2);
    assert_eq!(r1["highest_severity"], "alarm");
    assert_eq!(r1["away"], false);
    assert_eq!(r1["last_checkin_at"], at(6).to_string());
    let devices: Vec<&str> = r1["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["gw-1", "wr-1"]);

    let other = get(&f.state, "/api/v1/residents/r-2", "token-cw-01").await;
    let missing = get(&f.state, "/api/v1/residents/r-404", "token-cw-01").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.text, missing.text, "never reveal existence");
    for uri in [
        "/api/v1/residents/r-2/readings",
        "/api/v1/residents/r-404/readings",
    ] {
        let answer = get(&f.state, uri, "token-cw-01").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.text, missing.text);
    }
    let own = get(&f.state, "/api/v1/residents/r-1", "token-cw-01").await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.json()["id"], "r-1");
}

#[tokio::test]
async fn supervisors_see_their_region_and_admins_everyone() {
    let f = fixture();
    let ids = |answer: Answer| -> Vec<String> {
        answer.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let sup = ids(get(&f.state, "/api/v1/residents", "token-sup-g").await);
    assert_eq!(sup, ["r-1", "r-2"]);
    let admin = ids(get(&f.state, "/api/v1/residents", "token-adm-1").await);
    assert_eq!(admin.len(), 3);
    assert_eq!(
        get(&f.state, "/api/v1/residents/r-3", "token-sup-g")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r3 = get(&f.state, "/api/v1/residents/r-3", "token-adm-1")
        .await
        .json();
    assert_eq!(r3["away"], true, "2026-11-27 is inside the away period");
}

#[tokio::test]
async fn evaluators_get_reports_and_never_resident_data() {
    let f = fixture();
    for uri in [
        "/api/v1/residents",
        "/api/v1/residents/r-1",
        "/api/v1/residents/r-1/readings?type=heart_rate",
        "/api/v1/alerts",
        "/api/v1/alerts/1",
    ] {
        let answer = get(&f.state, uri, "token-ev-1").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(answer.error_code(), "forbidden");
    }
    let ack = call(
        &f.state,
        "POST",
        &format!("/api/v1/alerts/{}/ack", f.alarm_r1),
        Some("token-ev-1"),
        None,
    )
    .await;
    assert_eq!(ack.status, StatusCode::FORBIDDEN);

    let report = get(
        &f.state,
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&granularity=week",
        "token-ev-1",
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    assert!(report.json().is_object());
    assert!(
        !report.text.contains("Test Resident"),
        "no names in reports"
    );
    assert!(
        !report.text.contains("\"r-1\""),
        "no resident ids in reports"
    );
    let csv = get(
        &f.state,
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&format=csv",
        "token-adm-1",
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.text.starts_with("period"), "{}", csv.text);
    // The CLI's other outputs: the per-resident table and the HTML page.
    let residents = get(
        &f.state,
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&format=csv&table=residents&by=region",
        "token-ev-1",
    )
    .await;
    assert_eq!(residents.status, StatusCode::OK, "{}", residents.text);
    assert_ne!(residents.text, csv.text);
    assert!(!residents.text.contains("r-1,"), "pseudonyms only");
    let page = get(
        &f.state,
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&format=html",
        "token-ev-1",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text.contains("<svg"), "charts inline");
    assert!(!page.text.contains("Test Resident"), "no names in reports");
    for (uri, status) in [
        (
            "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30",
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/v1/reports/utilisation?from=2026-12-01&to=2026-11-30",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let token = if status == StatusCode::FORBIDDEN {
            "token-cw-01"
        } else {
            "token-ev-1"
        };
        assert_eq!(get(&f.state, uri, token).await.status, status, "{uri}");
    }
    for uri in [
        "/api/v1/reports/utilisation?from=2026-11-01",
        "/api/v1/reports/utilisation?from=nope&to=2026-11-30",
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&granularity=year",
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&format=pdf",
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&by=county",
        "/api/v1/reports/utilisation?from=2026-11-01&to=2026-11-30&format=csv&table=people",
    ] {
        assert_eq!(
            get(&f.state, uri, "token-ev-1").await.status,
            StatusCode::BAD_REQUEST,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn readings_by_type_range_and_page() {
    let f = fixture();
    let uri = format!(
        "/api/v1/residents/r-1/readings?from={}&to={}",
        at(0),
        at(60)
    );
    let all = get(&f.state, &uri, "token-cw-01").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let items = all.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 7);
    assert_eq!(
        items[0],
        json!({"at": at(0).to_string(), "device_id": "wr-1", "type": "heart_rate", "value": 70.0, "unit": "/min", "sensor": null})
    );
    assert!(items.iter().any(|r| r
        == &json!({"at": at(5).to_string(), "device_id": "wr-1", "type": "blood_pressure", "systolic": 128.0, "diastolic": 82.0, "unit": "mm[Hg]", "sensor": null})));
    assert!(items.iter().any(|r| r
        == &json!({"at": at(6).to_string(), "device_id": "gw-1", "type": "checkin", "text": "ok", "unit": null, "sensor": null})));

    // Type filter, repeated and comma-separated.
    let bp = get(
        &f.state,
        &format!("{uri}&type=blood_pressure,checkin"),
        "token-cw-01",
    )
    .await
    .json();
    assert_eq!(bp["items"].as_array().unwrap().len(), 2);
    let bp = get(
        &f.state,
        &format!("{uri}&type=blood_pressure&type=checkin"),
        "token-cw-01",
    )
    .await
    .json();
    assert_eq!(bp["items"].as_array().unwrap().len(), 2);

    // Default range: the 7 days before now (the clock is at +60 min).
    let default = get(
        &f.state,
        "/api/v1/residents/r-1/readings?type=heart_rate",
        "token-cw-01",
    )
    .await
    .json();
    assert_eq!(default["items"].as_array().unwrap().len(), 5);
    f.clock.advance(SignedDuration::from_hours(8 * 24));
    let later = get(&f.state, "/api/v1/residents/r-1/readings", "token-cw-01")
        .await
        .json();
    assert_eq!(later["items"].as_array().unwrap().len(), 0);

    // Pages of three, following next_cursor to the end.
    let mut seen = Vec::new();
    let mut next = format!("{uri}&limit=3");
    loop {
        let page = get(&f.state, &next, "token-cw-01").await.json();
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{uri}&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, items);

    for bad in [
        format!("{uri}&type=pulse"),
        format!("{uri}&limit=0"),
        format!("{uri}&limit=many"),
        format!("{uri}&cursor=zz"),
        "/api/v1/residents/r-1/readings?from=yesterday".to_owned(),
        format!(
            "/api/v1/residents/r-1/readings?from={}&to={}",
            at(60),
            at(0)
        ),
    ] {
        let answer = get(&f.state, &bad, "token-cw-01").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text
        );
        assert_eq!(answer.error_code(), "bad_request");
    }
}

#[tokio::test]
async fn readings_kept_in_influxdb_are_a_clear_501() {
    let f = fixture();
    let store = Store::open_in_memory().unwrap();
    let state = ApiState::new(ApiParts {
        stores: vec![store],
        tokens: Tokens::new([(StaffId::new("adm-1").unwrap(), "t".to_owned())]),
        token_source: None,
        clock: Arc::new(f.clock.clone()),
        readings: ReadingsBackend::Elsewhere("raw readings are kept in InfluxDB".into()),
        metrics: None,
        pipeline_running: f.pipeline.clone(),
        pseudonym_key: None,
        secret_issuer: None,
        config: HttpConfig::default(),
    });
    state
        .with_store(|store| {
            store
                .import_roster(&ondol_store::parse_roster(ROSTER, "t").unwrap())
                .map_err(ApiError::store("import"))
        })
        .await
        .unwrap();
    let answer = get(&state, "/api/v1/residents/r-1/readings", "t").await;
    assert_eq!(answer.status, StatusCode::NOT_IMPLEMENTED);
    assert!(answer.text.contains("InfluxDB"), "{}", answer.text);
}

#[tokio::test]
async fn alerts_are_listed_most_urgent_first_within_scope() {
    let f = fixture();
    let ids = |answer: &Answer| -> Vec<i64> {
        answer.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    };
    let cw1 = get(&f.state, "/api/v1/alerts", "token-cw-01").await;
    assert_eq!(cw1.status, StatusCode::OK, "{}", cw1.text);
    assert_eq!(ids(&cw1), [f.alarm_r1, f.caution_r1]);
    let first = &cw1.json()["items"][0];
    assert_eq!(first["rule"], "missed_checkin");
    assert_eq!(first["severity"], "alarm");
    assert_eq!(first["status"], "open");
    assert_eq!(first["resident_name"], "Test Resident One");
    assert_eq!(first["opened_at"], at(2).to_string());
    assert_eq!(first["open_seconds"], 58 * 60);
    assert_eq!(first["acknowledged_by"], Value::Null);
    assert_eq!(cw1.json()["next_cursor"], Value::Null);

    let sup = get(&f.state, "/api/v1/alerts", "token-sup-g").await;
    assert_eq!(ids(&sup), [f.system, f.alarm_r1, f.alert_r2, f.caution_r1]);
    let admin = get(
        &f.state,
        "/api/v1/alerts?rule=missed_checkin",
        "token-adm-1",
    )
    .await;
    assert_eq!(ids(&admin), [f.alarm_r1, f.alert_r2]);
    let filtered = get(&f.state, "/api/v1/alerts?resident=r-2", "token-cw-01").await;
    assert_eq!(
        ids(&filtered),
        Vec::<i64>::new(),
        "another's resident yields nothing"
    );

    // Pages of one follow the same order.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/alerts?limit=1".to_owned();
    loop {
        let page = get(&f.state, &uri, "token-sup-g").await;
        seen.extend(ids(&page));
        match page.json()["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/alerts?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids(&sup));

    for bad in [
        "/api/v1/alerts?status=closed",
        "/api/v1/alerts?rule=nope",
        "/api/v1/alerts?limit=-1",
        "/api/v1/alerts?cursor=abc",
        "/api/v1/alerts/abc",
    ] {
        assert_eq!(
            get(&f.state, bad, "token-cw-01").await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn working_an_alert_ack_then_resolve_with_conflicts_and_bad_outcomes() {
    let f = fixture();
    let id = f.alarm_r1;
    let ack_uri = format!("/api/v1/alerts/{id}/ack");
    let resolve_uri = format!("/api/v1/alerts/{id}/resolve");

    // Another caseworker cannot see it, let alone work it.
    for (method, uri) in [
        ("GET", format!("/api/v1/alerts/{id}")),
        ("POST", ack_uri.clone()),
        ("POST", resolve_uri.clone()),
    ] {
        let answer = call(
            &f.state,
            method,
            &uri,
            Some("token-cw-02"),
            Some(json!({"outcome": "resident_ok"})),
        )
        .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
    assert_eq!(
        get(&f.state, "/api/v1/alerts/99999", "token-cw-01")
            .await
            .text,
        get(
            &f.state,
            &format!("/api/v1/alerts/{}", f.alert_r2),
            "token-cw-01"
        )
        .await
        .text
    );

    let acked = call(
        &f.state,
        "POST",
        &ack_uri,
        Some("token-cw-01"),
        Some(json!({"note": "calling her"})),
    )
    .await;
    assert_eq!(acked.status, StatusCode::OK, "{}", acked.text);
    let acked = acked.json();
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "cw-01");
    assert_eq!(acked["acknowledged_at"], at(60).to_string());

    let again = call(&f.state, "POST", &ack_uri, Some("token-cw-01"), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "conflict");

    for body in [
        json!({"outcome": "cleared_by_resident"}),
        json!({"outcome": "fine"}),
        json!({"note": "no outcome"}),
    ] {
        let answer = call(
            &f.state,
            "POST",
            &resolve_uri,
            Some("token-cw-01"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.text
        );
    }
    let garbage = call(&f.state, "POST", &resolve_uri, Some("token-cw-01"), None).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);

    f.clock.advance(SignedDuration::from_mins(5));
    let resolved = call(
        &f.state,
        "POST",
        &resolve_uri,
        Some("token-cw-01"),
        Some(json!({"outcome": "resident_ok", "note": "she was in the garden"})),
    )
    .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text);
    let resolved = resolved.json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["outcome"], "resident_ok");
    assert_eq!(resolved["resolved_by"], "cw-01");
    assert_eq!(resolved["open_seconds"], 63 * 60);

    let twice = call(
        &f.state,
        "POST",
        &resolve_uri,
        Some("token-cw-01"),
        Some(json!({"outcome": "resident_ok"})),
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let late_ack = call(&f.state, "POST", &ack_uri, Some("token-cw-01"), None).await;
    assert_eq!(late_ack.status, StatusCode::CONFLICT);

    let detail = get(&f.state, &format!("/api/v1/alerts/{id}"), "token-cw-01")
        .await
        .json();
    let events: Vec<(&str, &str)> = detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["event"].as_str().unwrap(), t["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("opened", "system"),
            ("acknowledged", "cw-01"),
            ("resolved", "cw-01")
        ]
    );
    assert_eq!(detail["transitions"][2]["note"], "she was in the garden");

    let active = get(&f.state, "/api/v1/alerts", "token-cw-01").await.json();
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let resolved_list = get(&f.state, "/api/v1/alerts?status=resolved", "token-cw-01").await;
    assert_eq!(
        resolved_list.status,
        StatusCode::OK,
        "{}",
        resolved_list.text
    );
    let resolved_list = resolved_list.json();
    assert_eq!(resolved_list["items"][0]["id"], id);
}

#[tokio::test]
async fn operations_endpoints_and_the_dashboard_files() {
    let f = fixture();
    let health = call(&f.state, "GET", "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    let not_ready = call(&f.state, "GET", "/readyz", None, None).await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(not_ready.json()["pipeline"], false);
    f.pipeline.store(true, Ordering::Release);
    let ready = call(&f.state, "GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["store"], true);
    assert_eq!(
        call(&f.state, "GET", "/metrics", None, None).await.status,
        StatusCode::NOT_FOUND
    );

    for (uri, kind) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let answer = call(&f.state, "GET", uri, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert!(
            answer.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            answer.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
    let unknown = call(
        &f.state,
        "GET",
        "/api/v1/nothing",
        Some("token-cw-01"),
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");

    let doc = call(&f.state, "GET", "/api/v1/openapi.json", None, None)
        .await
        .json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/{id}/resolve",
        "/api/v1/residents/{id}/readings",
        "/api/v1/me",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Alert"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn metrics_render_through_the_installed_recorder() {
    let f = fixture();
    let state = ApiState::new(ApiParts {
        stores: vec![Store::open_in_memory().unwrap()],
        tokens: Tokens::default(),
        token_source: None,
        clock: Arc::new(f.clock.clone()),
        readings: ReadingsBackend::Embedded,
        metrics: Some(Arc::new(|| "ondol_test_total 1\n".to_owned())),
        pipeline_running: f.pipeline.clone(),
        pseudonym_key: None,
        secret_issuer: None,
        config: HttpConfig::default(),
    });
    let answer = call(&state, "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(answer.text, "ondol_test_total 1\n");
}

/// Every audit entry so far: (actor, role, action, residents, status).
async fn audit_log(state: &ApiState) -> Vec<(String, String, String, Vec<String>, u16)> {
    state
        .with_store(|store| {
            let mut out = Vec::new();
            store
                .for_each_audit(Timestamp::MIN, Timestamp::MAX, |entry| {
                    out.push((
                        entry.actor,
                        entry.role,
                        entry.action,
                        entry.residents,
                        entry.status,
                    ));
                    Ok(())
                })
                .map_err(ApiError::store("reading the audit log"))?;
            let verified = store
                .verify_audit()
                .map_err(ApiError::store("verifying the audit log"))?;
            assert_eq!(verified.broken, None, "the chain holds");
            Ok(out)
        })
        .await
        .unwrap()
}

fn entry(
    actor: &str,
    role: &str,
    action: &str,
    residents: &[&str],
    status: u16,
) -> (String, String, String, Vec<String>, u16) {
    (
        actor.to_owned(),
        role.to_owned(),
        action.to_owned(),
        residents.iter().map(|r| (*r).to_owned()).collect(),
        status,
    )
}

#[tokio::test]
async fn every_request_on_resident_data_is_audited_refused_ones_too() {
    let f = fixture();
    // No resident data: no entry.
    get(&f.state, "/api/v1/me", "token-cw-01").await;
    call(&f.state, "GET", "/healthz", None, None).await;
    assert!(audit_log(&f.state).await.is_empty());

    get(&f.state, "/api/v1/residents", "token-cw-01").await;
    get(
        &f.state,
        "/api/v1/residents/r-1/readings?type=heart_rate",
        "token-cw-01",
    )
    .await;
    get(&f.state, "/api/v1/alerts", "token-sup-g").await;
    get(&f.state, "/api/v1/residents/r-2", "token-cw-01").await;
    get(&f.state, "/api/v1/residents/r-1/readings", "token-ev-1").await;
    call(
        &f.state,
        "GET",
        "/api/v1/residents/r-1",
        Some("stolen?"),
        None,
    )
    .await;
    get(
        &f.state,
        "/api/v1/residents/r-1/readings?from=garbage",
        "token-cw-01",
    )
    .await;
    call(
        &f.state,
        "POST",
        &format!("/api/v1/alerts/{}/ack", f.alarm_r1),
        Some("token-cw-01"),
        None,
    )
    .await;
    call(
        &f.state,
        "POST",
        &format!("/api/v1/alerts/{}/ack", f.alert_r2),
        Some("token-cw-01"),
        None,
    )
    .await;

    let log = audit_log(&f.state).await;
    assert_eq!(
        log,
        [
            entry(
                "cw-01",
                "caseworker",
                "GET /api/v1/residents",
                &["r-1"],
                200
            ),
            entry(
                "cw-01",
                "caseworker",
                "GET /api/v1/residents/{id}/readings",
                &["r-1"],
                200
            ),
            entry(
                "sup-g",
                "supervisor",
                "GET /api/v1/alerts",
                &["r-1", "r-2"],
                200
            ),
            entry(
                "cw-01",
                "caseworker",
                "GET /api/v1/residents/{id}",
                &["r-2"],
                404
            ),
            entry(
                "ev-1",
                "evaluator",
                "GET /api/v1/residents/{id}/readings",
                &["r-1"],
                403
            ),
            entry(
                "anonymous",
                "none",
                "GET /api/v1/residents/{id}",
                &["r-1"],
                401
            ),
            entry(
                "cw-01",
                "caseworker",
                "GET /api/v1/residents/{id}/readings",
                &["r-1"],
                400
            ),
            entry(
                "cw-01",
                "caseworker",
                "POST /api/v1/alerts/{id}/ack",
                &["r-1"],
                200
            ),
            entry(
                "cw-01",
                "caseworker",
                "POST /api/v1/alerts/{id}/ack",
                &[],
                404
            ),
        ]
    );
}

#[tokio::test]
async fn admins_manage_the_registry_and_changes_apply_at_once() {
    let f = fixture();
    for uri in [
        "/api/v1/admin/residents",
        "/api/v1/admin/devices",
        "/api/v1/admin/staff",
    ] {
        for token in ["token-cw-01", "token-sup-g", "token-ev-1"] {
            assert_eq!(
                get(&f.state, uri, token).await.status,
                StatusCode::FORBIDDEN,
                "{uri} {token}"
            );
        }
        assert_eq!(
            get(&f.state, uri, "token-adm-1").await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    let put = |uri: String, body: Value| {
        let state = f.state.clone();
        async move { call(&state, "PUT", &uri, Some("token-adm-1"), Some(body)).await }
    };

    // A new resident for cw-01 shows on cw-01's board at once.
    let created = put(
        "/api/v1/admin/residents/r-4".into(),
        json!({"name": "New Resident", "timezone": "Asia/Seoul", "region": "gangjin",
               "enrolled_from": "2026-11-01", "caseworker": "cw-01",
               "checkin": {"window": "07:00-09:30", "passive": true}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(
        created.json()["checkin"],
        json!({"window": "07:00-09:30", "passive": true})
    );
    let board = get(&f.state, "/api/v1/residents", "token-cw-01")
        .await
        .json();
    assert_eq!(board["items"].as_array().unwrap().len(), 2);

    // Reassigning r-1 moves it from cw-01's scope to cw-02's.
    let moved = put(
        "/api/v1/admin/residents/r-1/caseworker".into(),
        json!({"caseworker": "cw-02"}),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(
        get(&f.state, "/api/v1/residents/r-1", "token-cw-01")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&f.state, "/api/v1/residents/r-1", "token-cw-02")
            .await
            .status,
        StatusCode::OK
    );

    // Away periods.
    let away = put(
        "/api/v1/admin/residents/r-1/away".into(),
        json!({"periods": [{"from": "2026-11-26", "until": "2026-11-28", "reason": "hospital"}]}),
    )
    .await;
    assert_eq!(away.status, StatusCode::OK, "{}", away.text);
    assert_eq!(
        get(&f.state, "/api/v1/residents/r-1", "token-cw-02")
            .await
            .json()["away"],
        true
    );

    // A device moved to r-2 from now on: its earlier readings stay r-1's.
    let device = put(
        "/api/v1/admin/devices/wr-1".into(),
        json!({"kind": "wearable", "resident": "r-2"}),
    )
    .await;
    assert_eq!(device.status, StatusCode::OK, "{}", device.text);
    let device = device.json();
    assert_eq!(device["resident"], "r-2");
    assert_eq!(device["bindings"].as_array().unwrap().len(), 2);
    let r1 = get(
        &f.state,
        &format!(
            "/api/v1/residents/r-1/readings?type=heart_rate&from={}",
            at(0)
        ),
        "token-cw-02",
    )
    .await
    .json();
    assert_eq!(r1["items"].as_array().unwrap().len(), 5);
    let r2_board = get(&f.state, "/api/v1/residents/r-2", "token-cw-02")
        .await
        .json();
    assert!(
        r2_board["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "wr-1")
    );

    // New staff can sign in at once (token from the token source).
    let staff = put(
        "/api/v1/admin/staff/cw-09".into(),
        json!({"name": "New Caseworker", "role": "caseworker", "token_env": "ONDOL_TOKEN_CW_09"}),
    )
    .await;
    assert_eq!(staff.status, StatusCode::OK, "{}", staff.text);
    assert_eq!(
        get(&f.state, "/api/v1/me", "token-cw-09").await.json()["id"],
        "cw-09"
    );

    // Refusals.
    for (uri, body, status) in [
        (
            "/api/v1/admin/residents/r-5",
            json!({"name": "X", "timezone": "Mars/Olympus", "region": "g", "enrolled_from": "2026-01-01"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/residents/r-5",
            json!({"name": "X", "timezone": "Asia/Seoul", "region": "g", "enrolled_from": "2026-01-01", "caseworker": "sup-g"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/residents/r-5",
            json!({"name": "X", "timezone": "Asia/Seoul", "region": "g", "enrolled_from": "2026-01-01", "checkin": {"window": "10:00-09:00"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/residents/bad%20id",
            json!({"name": "X", "timezone": "Asia/Seoul", "region": "g", "enrolled_from": "2026-01-01"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/residents/r-404/caseworker",
            json!({"caseworker": null}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/admin/residents/r-1/away",
            json!({"periods": [{"from": "2026-12-02", "until": "2026-12-01"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/devices/gw-9",
            json!({"kind": "toaster", "resident": "r-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/devices/gw-9",
            json!({"kind": "gateway", "resident": "r-404"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v1/admin/staff/adm-1",
            json!({"name": "Admin", "role": "caseworker"}),
            StatusCode::CONFLICT,
        ),
        (
            "/api/v1/admin/staff/cw-02",
            json!({"name": "Choi", "role": "supervisor"}),
            StatusCode::CONFLICT,
        ),
    ] {
        let answer = put(uri.to_owned(), body.clone()).await;
        assert_eq!(answer.status, status, "{uri} {body}: {}", answer.text);
    }
    let garbage = call(
        &f.state,
        "PUT",
        "/api/v1/admin/staff/x",
        Some("token-adm-1"),
        None,
    )
    .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_finish_in_time_gets_408() {
    let f = fixture_with(HttpConfig {
        request_timeout: std::time::Duration::from_millis(100),
        ..HttpConfig::default()
    });
    // Hold the API's store until the request has been answered.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn({
        let state = f.state.clone();
        async move {
            state
                .with_store(move |_| {
                    let _ = locked.send(());
                    let _ = held.recv();
                    Ok(())
                })
                .await
        }
    });
    is_locked.await.unwrap();
    let answer = get(&f.state, "/api/v1/residents", "token-cw-01").await;
    assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();
}

#[tokio::test]
async fn fhir_export_is_a_bundle_of_vital_signs_in_scope_and_audited() {
    let f = fixture();
    let uri = format!("/api/v1/residents/r-1/fhir?from={}&to={}", at(0), at(60));
    let answer = get(&f.state, &uri, "token-cw-01").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/fhir+json"
    );
    let bundle = answer.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().unwrap();
    // Five heart rates and one blood pressure; the check-in is no vital sign.
    assert_eq!(entries.len(), 6, "{bundle}");
    let codes: Vec<&str> = entries
        .iter()
        .map(|e| e["resource"]["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == "8867-4").count(), 5);
    assert_eq!(codes.iter().filter(|c| **c == "85354-9").count(), 1);
    for entry in entries {
        assert_eq!(entry["resource"]["subject"]["reference"], "Patient/r-1");
    }
    let bp = entries
        .iter()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "85354-9")
        .unwrap();
    assert_eq!(
        bp["resource"]["component"][0]["valueQuantity"]["value"],
        128.0
    );

    // A type filter narrows it; a non-vital type is a clear 400.
    let bp_only = get(
        &f.state,
        &format!("{uri}&type=blood_pressure"),
        "token-cw-01",
    )
    .await
    .json();
    assert_eq!(bp_only["entry"].as_array().unwrap().len(), 1);
    let steps = get(&f.state, &format!("{uri}&type=checkin"), "token-cw-01").await;
    assert_eq!(steps.status, StatusCode::BAD_REQUEST);
    assert!(steps.text.contains("vital"), "{}", steps.text);

    // Another caseworker's resident is 404 like a missing one; evaluators 403.
    let other = get(&f.state, "/api/v1/residents/r-2/fhir", "token-cw-01").await;
    let missing = get(&f.state, "/api/v1/residents/r-404/fhir", "token-cw-01").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.text, missing.text);
    let evaluator = get(&f.state, "/api/v1/residents/r-1/fhir", "token-ev-1").await;
    assert_eq!(evaluator.status, StatusCode::FORBIDDEN);
    let admin = get(&f.state, "/api/v1/residents/r-2/fhir", "token-adm-1").await;
    assert_eq!(admin.status, StatusCode::OK);

    let log = audit_log(&f.state).await;
    let action = "GET /api/v1/residents/{id}/fhir";
    assert!(
        log.contains(&entry("cw-01", "caseworker", action, &["r-1"], 200)),
        "{log:?}"
    );
    assert!(
        log.contains(&entry("cw-01", "caseworker", action, &["r-2"], 404)),
        "{log:?}"
    );
    assert!(
        log.contains(&entry("ev-1", "evaluator", action, &["r-1"], 403)),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_polling_dashboard_is_audited_once_per_window_and_changes_always() {
    let f = fixture();
    let count = |log: &[(String, String, String, Vec<String>, u16)], action: &str| {
        log.iter()
            .filter(|e| e.0 == "cw-01" && e.2 == action)
            .count()
    };
    for _ in 0..3 {
        let answer = get(&f.state, "/api/v1/alerts", "token-cw-01").await;
        assert_eq!(answer.status, StatusCode::OK);
        f.clock.advance(SignedDuration::from_secs(3));
    }
    let log = audit_log(&f.state).await;
    assert_eq!(count(&log, "GET /api/v1/alerts"), 1, "{log:?}");

    // Past the five-minute window the same poll is recorded again.
    f.clock.advance(SignedDuration::from_mins(5));
    get(&f.state, "/api/v1/alerts", "token-cw-01").await;
    let log = audit_log(&f.state).await;
    assert_eq!(count(&log, "GET /api/v1/alerts"), 2, "{log:?}");

    // Changes are never folded: an ack and its refused repeat are both there.
    let ack = format!("/api/v1/alerts/{}/ack", f.alarm_r1);
    for expected in [StatusCode::OK, StatusCode::CONFLICT] {
        let answer = call(&f.state, "POST", &ack, Some("token-cw-01"), None).await;
        assert_eq!(answer.status, expected, "{}", answer.text);
    }
    let log = audit_log(&f.state).await;
    assert_eq!(count(&log, "POST /api/v1/alerts/{id}/ack"), 2, "{log:?}");

    // With the window at 0s every request is recorded.
    let every = fixture_with(HttpConfig {
        audit_repeat_window: std::time::Duration::ZERO,
        ..HttpConfig::default()
    });
    for _ in 0..3 {
        get(&every.state, "/api/v1/alerts", "token-cw-01").await;
    }
    let log = audit_log(&every.state).await;
    assert_eq!(count(&log, "GET /api/v1/alerts"), 3, "{log:?}");
}

#[tokio::test]
async fn admins_issue_a_device_secret_shown_once_and_stored_as_a_hash() {
    let f = fixture();
    let issue = |token: &'static str, device: &'static str| {
        let state = f.state.clone();
        async move {
            call(
                &state,
                "POST",
                &format!("/api/v1/admin/devices/{device}/secret"),
                Some(token),
                None,
            )
            .await
        }
    };
    let answer = issue("token-adm-1", "wr-1").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let body = answer.json();
    assert_eq!(body["device_id"], "wr-1");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let stored = f
        .state
        .with_store(|store| {
            store
                .device_credentials()
                .map_err(ApiError::store("reading credentials"))
        })
        .await
        .unwrap();
    let wr1 = stored.iter().find(|d| d.id == "wr-1").unwrap();
    assert_eq!(
        wr1.credential_hash.as_deref(),
        Some(format!("test-hash-of-{secret}").as_str()),
        "the store keeps the hash the issuer made"
    );

    // A second issue replaces the first.
    let again = issue("token-adm-1", "wr-1").await.json();
    assert_ne!(again["secret"], body["secret"]);

    for (token, device, status) in [
        ("token-cw-01", "wr-1", StatusCode::FORBIDDEN),
        ("token-sup-g", "wr-1", StatusCode::FORBIDDEN),
        ("token-adm-1", "nope-9", StatusCode::NOT_FOUND),
        ("token-adm-1", "bad/id", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            issue(token, device).await.status,
            status,
            "{token} {device}"
        );
    }
    let log = audit_log(&f.state).await;
    assert!(
        log.contains(&entry(
            "adm-1",
            "admin",
            "POST /api/v1/admin/devices/{id}/secret",
            &["r-1"],
            200
        )),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|e| e.3.iter().any(|r| r.contains(&secret))),
        "no secret in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_holding_a_store_connection_does_not_hold_up_the_next() {
    let state = ApiState::new(ApiParts {
        stores: vec![
            Store::open_in_memory().unwrap(),
            Store::open_in_memory().unwrap(),
        ],
        tokens: Tokens::default(),
        token_source: None,
        clock: Arc::new(ManualClock::new(at(0))),
        readings: ReadingsBackend::Embedded,
        metrics: None,
        pipeline_running: Arc::new(AtomicBool::new(true)),
        pseudonym_key: None,
        secret_issuer: None,
        config: HttpConfig::default(),
    });
    // A long report holds one connection until told to finish.
    let (finish, finished) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let long = tokio::spawn({
        let state = state.clone();
        async move {
            state
                .with_store(move |_| {
                    let _ = started_tx.send(());
                    finished
                        .recv()
                        .map_err(|e| ApiError::internal("waiting", e))
                })
                .await
        }
    });
    started.await.unwrap();
    // An acknowledgement meanwhile gets the other connection. (With one
    // connection it would wait for the report: the timeout only bounds a
    // hang, it measures nothing.)
    let quick = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        state.with_store(|store| Ok(store.schema_version().is_ok())),
    )
    .await
    .expect("the second request did not wait for the first");
    assert!(quick.unwrap());
    finish.send(()).unwrap();
    long.await.unwrap().unwrap();
    // Both connections are back: two more can be held at once.
    for _ in 0..3 {
        state.with_store(|_| Ok(())).await.unwrap();
    }
}

/// The fixture plus what a supervisor's overview looks at: escalations,
/// an acknowledged alert, resident r-2 unseen (a `no_data` alert, and its
/// only device offline), batteries, and r-1's resolved alerts inside and
/// outside the 30-day history. The clock stands at `at(60)`.
async fn overview_fixture() -> Fixture {
    let f = fixture();
    let (caseworker_alarm, r2_alarm) = (f.alarm_r1, f.alert_r2);
    let day = 24 * 60;
    f.state
        .with_store(move |store| {
            let escalate = AlertUpdate {
                event: AlertEvent::Escalated,
                severity: None,
                escalated: true,
                next_escalation_at: None,
                note: None,
            };
            for id in [caseworker_alarm, r2_alarm] {
                store
                    .update_alert(id, &escalate, at(20), |_| Vec::new())
                    .unwrap()
                    .unwrap();
            }
            store
                .acknowledge_alert(caseworker_alarm, "cw-01", at(25), None)
                .unwrap()
                .unwrap();
            raise_new(
                store,
                &NewAlert {
                    subject: Subject::Device(DeviceId::new("gw-2").unwrap()),
                    device_id: Some(DeviceId::new("gw-2").unwrap()),
                    cause: Cause::Silent,
                    ..new_alert(Rule::DeviceOffline, Some("r-2"), Severity::Low, at(50))
                },
            );
            raise_new(
                store,
                &NewAlert {
                    cause: Cause::NoData,
                    ..new_alert(Rule::Inactivity, Some("r-2"), Severity::Caution, at(-3000))
                },
            );
            for (days, outcome) in [
                (3, Outcome::NeededHelp),
                (10, Outcome::FalseAlarmDevice),
                (40, Outcome::ResidentOk),
            ] {
                let id = raise(
                    store,
                    Rule::HelpRequest,
                    Some("r-1"),
                    Severity::Critical,
                    at(-days * day),
                );
                store
                    .resolve_alert(id, "cw-01", outcome, at(-days * day + 30), None)
                    .unwrap()
                    .unwrap();
            }
            let status = |device: &str, resident: &str, online: bool, battery: u8| StatusUpdate {
                device_id: DeviceId::new(device).unwrap(),
                resident_id: Some(ResidentId::new(resident).unwrap()),
                status: ondol_model::wire::DeviceStatus {
                    online,
                    battery_pct: Some(battery),
                    rssi_dbm: None,
                    firmware: None,
                },
                received_at: at(55),
            };
            store
                .commit_batch(&Batch {
                    statuses: vec![
                        status("wr-1", "r-1", true, 15),
                        status("gw-1", "r-1", true, 80),
                        status("gw-2", "r-2", false, 20),
                    ],
                    ..Batch::default()
                })
                .unwrap();
            Ok(())
        })
        .await
        .unwrap();
    f
}

fn ids_of(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_supervisor_overview_counts_their_region_by_tier_and_age() {
    let f = overview_fixture().await;
    let answer = get(&f.state, "/api/v1/overview", "token-sup-g").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let o = answer.json();
    assert_eq!(o["region"], "gangjin");
    assert_eq!(o["generated_at"], at(60).to_string());
    assert_eq!(o["residents"], 2);

    // Open: r-1 caution (59 min) and alarm (acknowledged, 58 min); r-2
    // alarm (57 min), device offline (10 min), no-data caution (51 h); the
    // system alert (critical, 56 min).
    let open = &o["open_alerts"];
    assert_eq!(
        (&open["total"], &open["unacknowledged"], &open["system"]),
        (&json!(6), &json!(5), &json!(1))
    );
    let tiers: Vec<Value> = open["by_tier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            json!([
                t["severity"],
                t["total"],
                t["unacknowledged"],
                t["under_15_min"],
                t["under_1_h"],
                t["under_24_h"],
                t["older"]
            ])
        })
        .collect();
    assert_eq!(
        tiers,
        [
            json!(["critical", 1, 1, 0, 1, 0, 0]),
            json!(["danger", 0, 0, 0, 0, 0, 0]),
            json!(["alarm", 2, 1, 0, 2, 0, 0]),
            json!(["caution", 2, 2, 0, 1, 0, 1]),
            json!(["low", 1, 1, 1, 0, 0, 0]),
        ]
    );

    // Escalated and acknowledged (r-1's alarm) is no longer waiting.
    let waiting = &o["escalations_waiting"];
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{waiting}");
    assert_eq!(waiting[0]["id"], f.alert_r2);
    assert_eq!(waiting[0]["resident_name"], "Test Resident Two");
    assert_eq!(waiting[0]["escalations"], 1);

    let unseen = &o["unseen_residents"];
    assert_eq!(ids_of(unseen, "id"), ["r-2"]);
    assert_eq!(
        unseen[0]["reasons"],
        json!(["no_data_alert", "all_devices_offline"])
    );
    assert_eq!(unseen[0]["last_heard_at"], at(55).to_string());
    assert_eq!(unseen[0]["caseworker"], "cw-02");

    // At or below 20 %, emptiest first; gw-1 at 80 % is fine.
    assert_eq!(o["low_battery_pct"], 20);
    let low = &o["low_battery"];
    assert_eq!(ids_of(low, "id"), ["wr-1", "gw-2"]);
    assert_eq!(
        (
            &low[0]["battery_pct"],
            &low[0]["resident_id"],
            &low[0]["kind"]
        ),
        (&json!(15), &json!("r-1"), &json!("wearable"))
    );
    assert_eq!(low[1]["online"], false);

    // r-1: two open, two help requests resolved within 30 days (the one
    // 40 days ago is outside); r-2: three open, none resolved.
    assert_eq!(o["history_days"], 30);
    let history = &o["history"];
    assert_eq!(ids_of(history, "id"), ["r-1", "r-2"]);
    assert_eq!(
        history[0],
        json!({
            "id": "r-1", "name": "Test Resident One", "caseworker": "cw-01",
            "open_alerts": 2, "highest_severity": "alarm", "alerts": 4,
            "outcomes": {"false_alarm_device": 1, "needed_help": 1},
            "last_alert_at": at(2).to_string(),
        })
    );
    assert_eq!(
        (
            &history[1]["alerts"],
            &history[1]["open_alerts"],
            &history[1]["outcomes"]
        ),
        (&json!(3), &json!(3), &json!({}))
    );

    // The board marks the same batteries low.
    let board = get(&f.state, "/api/v1/residents/r-1", "token-sup-g")
        .await
        .json();
    let flags: Vec<Value> = board["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| json!([d["id"], d["battery_low"]]))
        .collect();
    assert_eq!(flags, [json!(["gw-1", false]), json!(["wr-1", true])]);
}

#[tokio::test]
async fn the_overview_is_scoped_audited_and_refused_to_caseworkers_and_evaluators() {
    let f = overview_fixture().await;
    // A supervisor of the other region sees none of gangjin: only their
    // resident (away, no device) and the system alert every supervisor gets.
    let staff = call(
        &f.state,
        "PUT",
        "/api/v1/admin/staff/sup-a",
        Some("token-adm-1"),
        Some(json!({"name": "Supervisor Alentejo", "role": "supervisor", "region": "alentejo"})),
    )
    .await;
    assert_eq!(staff.status, StatusCode::OK, "{}", staff.text);
    let other = get(&f.state, "/api/v1/overview", "token-sup-a").await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    for gangjin in [
        "\"r-1\"",
        "\"r-2\"",
        "Test Resident One",
        "Test Resident Two",
        "wr-1",
        "gw-2",
    ] {
        assert!(
            !other.text.contains(gangjin),
            "{gangjin} leaked: {}",
            other.text
        );
    }
    let o = other.json();
    assert_eq!(o["region"], "alentejo");
    assert_eq!(o["residents"], 1);
    assert_eq!(o["open_alerts"]["total"], 1);
    assert_eq!(o["open_alerts"]["system"], 1);
    assert_eq!(o["escalations_waiting"], json!([]));
    assert_eq!(o["low_battery"], json!([]));
    assert_eq!(ids_of(&o["unseen_residents"], "id"), ["r-3"]);
    assert_eq!(o["unseen_residents"][0]["reasons"], json!(["no_devices"]));
    assert_eq!(o["unseen_residents"][0]["away"], true);
    assert_eq!(o["unseen_residents"][0]["last_heard_at"], Value::Null);
    assert_eq!(ids_of(&o["history"], "id"), ["r-3"]);

    // An admin sees every region.
    let all = get(&f.state, "/api/v1/overview", "token-adm-1")
        .await
        .json();
    assert_eq!(all["region"], Value::Null);
    assert_eq!(all["residents"], 3);
    assert_eq!(ids_of(&all["unseen_residents"], "id"), ["r-3", "r-2"]);

    // Caseworkers and evaluators: 403.
    for token in ["token-cw-01", "token-ev-1"] {
        let answer = get(&f.state, "/api/v1/overview", token).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{token}");
        assert_eq!(answer.error_code(), "forbidden");
    }

    // Every read is audited with the residents it showed; refusals too.
    let overview: Vec<_> = audit_log(&f.state)
        .await
        .into_iter()
        .filter(|e| e.2 == "GET /api/v1/overview")
        .collect();
    assert_eq!(
        overview,
        [
            entry("sup-a", "supervisor", "GET /api/v1/overview", &["r-3"], 200),
            entry(
                "adm-1",
                "admin",
                "GET /api/v1/overview",
                &["r-1", "r-2", "r-3"],
                200
            ),
            entry("cw-01", "caseworker", "GET /api/v1/overview", &[], 403),
            entry("ev-1", "evaluator", "GET /api/v1/overview", &[], 403),
        ]
    );
}
