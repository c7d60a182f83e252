//! One simulated device: its own MQTT session and the behaviour of a real
//! device on top of it (buffer while offline, batch, keep every message until
//! its receipt comes back, resend after a timeout or a reconnect).
//!
//! A device is one tokio task running two futures side by side:
//!
//! - the *link* owns rumqttc's `EventLoop`: it is the only code that polls it,
//!   and it is never cancelled mid-poll except to drop the connection, because
//!   a poll cancelled while writing can leave an inflight slot that is never
//!   acknowledged. It adds the backoff rumqttc lacks, re-subscribes when the
//!   broker has no session, announces the device online, and says goodbye
//!   cleanly on shutdown.
//! - the *logic* walks the home's day plan in simulated time, batches readings
//!   into messages, keeps the unreceipted ones and hands them to the client
//!   with `try_publish` (it never waits on the request channel, so it stays
//!   responsive to receipts and shutdown).
//!
//! They talk through an unbounded channel of link events (their number is
//! bounded by what the device sent), a `watch` for "be online / be offline",
//! and a `Notify` that says the request channel has room again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use ondol_model::roster::DeviceKind;
use ondol_model::wire::{self, Receipt};
use ondol_model::{DeviceId, Reading};
use rand::Rng;
use rand::rngs::SmallRng;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::clock::SimClock;
use crate::garbage::Garbage;
use crate::report::{Counters, add, sub};
use crate::schedule::{self, Behaviour, HomeProfile};
use crate::seed::{self, Salt};
use ondol_model::backoff::Backoff;

/// Requests the logic may queue in rumqttc's channel before it must wait.
const REQUEST_CHANNEL: usize = 64;
/// How long a clean goodbye (offline status, DISCONNECT) may take at shutdown.
const GOODBYE: Duration = Duration::from_secs(2);
/// A garbage message is never resent; if no receipt has come after this many
/// resend timeouts, it is forgotten.
const GARBAGE_PATIENCE: u32 = 6;
/// Mean simulated time between two outages of a flaky device.
const MEAN_TIME_BETWEEN_OUTAGES: SignedDuration = SignedDuration::from_hours(8);
const FIRMWARE: &str = "sim-1.0";
const OFFLINE_STATUS: &[u8] = br#"{"state":"offline"}"#;

/// Run-wide settings and shared state every device reads.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub broker_host: String,
    pub broker_port: u16,
    pub clock: SimClock,
    /// Where simulated time starts; nothing earlier is sent.
    pub start: Timestamp,
    pub seed: u64,
    pub behaviour: Behaviour,
    pub malformed_rate: f64,
    pub readings_per_message: usize,
    pub batch_linger: Duration,
    pub resend_after: Duration,
    pub max_unreceipted: usize,
    pub max_buffered_readings: usize,
    pub max_payload_bytes: usize,
    pub keep_alive: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Prefix of every msg_id of this run, so receipts for an earlier run's
    /// messages (a persistent session delivers them late) are recognised.
    pub run_prefix: String,
    pub counters: Arc<Counters>,
}

/// What the devices of one home share: the plan is computed from it.
#[derive(Debug)]
pub(crate) struct Home {
    pub profile: HomeProfile,
    pub timezone: TimeZone,
    pub kinds: Vec<DeviceKind>,
}

/// One device to run.
#[derive(Debug)]
pub(crate) struct DeviceSpec {
    pub id: DeviceId,
    pub kind: DeviceKind,
    /// Index among its home's devices.
    pub index: usize,
    pub home: Arc<Home>,
    pub password: Option<String>,
    /// When to connect the first time (the connect ramp).
    pub connect_at: Instant,
    /// Whether this device drops offline now and then.
    pub flaky: bool,
    /// Readings it is cued to send on top of its days ([`crate::Cue`]).
    pub cued: Vec<Reading>,
}

/// What the logic wants the link to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Online,
    Offline,
}

/// What the link tells the logic.
#[derive(Debug)]
enum LinkEvent {
    Up,
    Down,
    Receipt(Publish),
}

fn device_rng(fleet: &Fleet, id: &DeviceId, stream: u64) -> SmallRng {
    seed::rng(
        fleet.seed,
        Salt::Device,
        &[seed::hash_str(id.as_str()), stream],
    )
}

/// Runs one device until `shutdown`.
pub(crate) async fn run(spec: DeviceSpec, fleet: Arc<Fleet>, shutdown: CancellationToken) {
    let mut options = MqttOptions::new(
        spec.id.as_str(),
        fleet.broker_host.clone(),
        fleet.broker_port,
    );
    options
        .set_keep_alive(fleet.keep_alive)
        // A clean session, as docs/DEVICES.md advises: with the embedded
        // broker a resumed persistent session stopped delivering receipts to
        // some devices after a reconnect (measured: ~2% of a 1,000-home fleet
        // resending forever). Resending unreceipted messages is the guarantee.
        .set_clean_session(true)
        .set_credentials(spec.id.as_str(), spec.password.clone().unwrap_or_default())
        .set_last_will(LastWill::new(
            wire::status_topic(&spec.id),
            OFFLINE_STATUS.to_vec(),
            QoS::AtLeastOnce,
            true,
        ))
        .set_max_packet_size(64 * 1024, fleet.max_payload_bytes + 1024);
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
    let (want_tx, want_rx) = watch::channel(Want::Online);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let room = Arc::new(Notify::new());

    let link = Link {
        id: spec.id.clone(),
        kind: spec.kind,
        client: client.clone(),
        fleet: Arc::clone(&fleet),
        events: events_tx,
        room: Arc::clone(&room),
        rng: device_rng(&fleet, &spec.id, 1),
    };
    let logic = Logic::new(&spec, client, Arc::clone(&fleet), want_tx, room);
    tokio::join!(
        link.run(eventloop, want_rx, spec.connect_at, shutdown.clone()),
        logic.run(events_rx, shutdown),
    );
}

struct Link {
    id: DeviceId,
    kind: DeviceKind,
    client: AsyncClient,
    fleet: Arc<Fleet>,
    events: mpsc::UnboundedSender<LinkEvent>,
    room: Arc<Notify>,
    rng: SmallRng,
}

impl Link {
    async fn run(
        mut self,
        mut eventloop: EventLoop,
        mut want: watch::Receiver<Want>,
        connect_at: Instant,
        shutdown: CancellationToken,
    ) {
        let receipts = wire::receipts_topic(&self.id);
        let mut backoff = Backoff::new(self.fleet.backoff_base, self.fleet.backoff_cap);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(connect_at) => {}
        }
        'session: loop {
            // Wait until the logic wants the device online.
            while *want.borrow_and_update() == Want::Offline {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = want.changed() => if changed.is_err() { return },
                }
            }
            forget_queued(&mut eventloop);
            let mut up = false;
            loop {
                let event = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => {
                        if up {
                            self.goodbye(&mut eventloop).await;
                        }
                        return;
                    }
                    changed = want.changed() => {
                        if changed.is_err() || *want.borrow_and_update() == Want::Offline {
                            // Pull the plug without DISCONNECT, so the broker
                            // publishes the Will as it would for a dead battery.
                            forget_queued(&mut eventloop);
                            if up {
                                debug!(device = %self.id, "device drops offline");
                                self.send(LinkEvent::Down);
                            }
                            continue 'session;
                        }
                        continue;
                    }
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        up = true;
                        if !ack.session_present {
                            // A new session has no subscription: make it before
                            // anything is (re)sent, so no receipt is missed.
                            if self
                                .client
                                .try_subscribe(&receipts, QoS::AtLeastOnce)
                                .is_err()
                            {
                                warn!(device = %self.id, "could not queue the receipts subscription");
                            }
                        }
                        let status = self.online_status();
                        if self
                            .client
                            .try_publish(
                                wire::status_topic(&self.id),
                                QoS::AtLeastOnce,
                                true,
                                status,
                            )
                            .is_err()
                        {
                            debug!(device = %self.id, "could not queue the online status");
                        }
                        debug!(device = %self.id, session_present = ack.session_present, "connected");
                        self.send(LinkEvent::Up);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if publish.topic == receipts {
                            self.send(LinkEvent::Receipt(publish));
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                            warn!(device = %self.id, "broker refused the receipts subscription");
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => self.room.notify_one(),
                    Ok(_) => {}
                    Err(error) => {
                        if up {
                            self.send(LinkEvent::Down);
                        } else {
                            add(&self.fleet.counters.connect_failures, 1);
                        }
                        up = false;
                        let delay = backoff.next_delay(self.rng.random::<f64>());
                        debug!(
                            device = %self.id,
                            error = %error,
                            retry_in_ms = delay.as_millis() as u64,
                            "connection lost or refused"
                        );
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = sleep(delay) => {}
                            changed = want.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                continue 'session;
                            }
                        }
                        forget_queued(&mut eventloop);
                    }
                }
            }
        }
    }

    fn send(&self, event: LinkEvent) {
        // The logic outlives the link except at shutdown, when nobody listens.
        let _ = self.events.send(event);
    }

    /// `{"state":"online","battery_pct":..,"rssi_dbm":..,"firmware":"sim-1.0"}`;
    /// mains-powered gateways report no battery.
    fn online_status(&self) -> Vec<u8> {
        let id_rng = &mut device_rng(&self.fleet, &self.id, 2);
        let full: f64 = id_rng.random_range(55.0..100.0);
        let rssi: i16 = id_rng.random_range(-85..-45);
        let sim_now = self.fleet.clock.sim_at(Instant::now());
        let days = sim_now.duration_since(self.fleet.start).as_secs_f64() / 86_400.0;
        let mut status =
            serde_json::json!({"state": "online", "rssi_dbm": rssi, "firmware": FIRMWARE});
        if self.kind != DeviceKind::Gateway {
            // A few percent a day, never quite empty.
            let pct = (full - 3.0 * days.max(0.0)).clamp(5.0, 100.0).round() as u8;
            status["battery_pct"] = pct.into();
        }
        status.to_string().into_bytes()
    }

    /// Tells the broker the device is going offline (retained) and disconnects
    /// cleanly, within [`GOODBYE`].
    async fn goodbye(&self, eventloop: &mut EventLoop) {
        let deadline = Instant::now() + GOODBYE;
        let topic = wire::status_topic(&self.id);
        let (mut said_offline, mut said_bye) = (false, false);
        loop {
            if !said_offline {
                said_offline = self
                    .client
                    .try_publish(&topic, QoS::AtLeastOnce, true, OFFLINE_STATUS)
                    .is_ok();
            }
            if said_offline && !said_bye {
                said_bye = self.client.try_disconnect().is_ok();
            }
            match timeout_at(deadline, eventloop.poll()).await {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// Drops whatever rumqttc still holds for a session (inflight publishes,
/// queued requests) and any network connection. The logic keeps every
/// unreceipted message itself and resends them after the next ConnAck, so
/// rumqttc's own replay would only double them.
fn forget_queued(eventloop: &mut EventLoop) {
    eventloop.clean();
    eventloop.pending.clear();
}

/// A message kept until its receipt.
#[derive(Debug)]
struct Kept {
    payload: Vec<u8>,
    /// Well-formed readings in it (0 for garbage).
    readings: u64,
    /// When it was last handed to the client; `None` until the first send.
    sent_at: Option<Instant>,
    /// Garbage is sent once; real readings until receipted.
    garbage: bool,
}

/// A flaky device's outages, in simulated time.
#[derive(Debug)]
struct Outages {
    rng: SmallRng,
    next_drop: Timestamp,
    back_at: Option<Timestamp>,
}

impl Outages {
    fn new(mut rng: SmallRng, from: Timestamp) -> Self {
        let next_drop = next_outage(&mut rng, from);
        Self {
            rng,
            next_drop,
            back_at: None,
        }
    }
}

/// Exponentially distributed gaps (a memoryless fault), at least 10 minutes.
fn next_outage(rng: &mut SmallRng, after: Timestamp) -> Timestamp {
    let u = 1.0 - rng.random::<f64>(); // (0, 1]
    let gap = (MEAN_TIME_BETWEEN_OUTAGES.as_secs_f64() * -u.ln()).max(600.0);
    after
        .checked_add(SignedDuration::from_secs_f64(gap))
        .unwrap_or(Timestamp::MAX)
}

struct Logic {
    id: DeviceId,
    index: usize,
    home: Arc<Home>,
    fleet: Arc<Fleet>,
    client: AsyncClient,
    readings_topic: String,
    want: watch::Sender<Want>,
    room: Arc<Notify>,
    rng: SmallRng,
    /// Whether any of the home's readings are this device's to send.
    has_role: bool,
    /// Cued readings not yet in `plan`, in time order.
    cued: VecDeque<Reading>,
    /// Today's remaining readings for this device, in time order.
    plan: VecDeque<Reading>,
    /// The local date `plan` came from, and when that day ends.
    plan_date: Date,
    plan_end: Timestamp,
    /// Readings due but not yet in a message, and since when it is non-empty.
    buffer: VecDeque<Reading>,
    buffer_since: Option<Instant>,
    /// Messages without a receipt, by counter (the msg_id suffix).
    kept: BTreeMap<u64, Kept>,
    /// Kept messages waiting to be (re)sent, oldest first.
    to_send: BTreeSet<u64>,
    next_counter: u64,
    /// The link reported a session; and the logic has not taken it offline.
    link_up: bool,
    offline: bool,
    ever_up: bool,
    outages: Option<Outages>,
    next_resend_scan: Instant,
    /// The request channel was full at the last attempt.
    channel_full: bool,
}

impl Logic {
    fn new(
        spec: &DeviceSpec,
        client: AsyncClient,
        fleet: Arc<Fleet>,
        want: watch::Sender<Want>,
        room: Arc<Notify>,
    ) -> Self {
        let home = Arc::clone(&spec.home);
        let has_role = schedule::has_role(spec.index, &home.kinds, home.profile.room_count())
            || !spec.cued.is_empty();
        let mut cued = spec.cued.clone();
        cued.sort_by_key(|r| r.ts);
        let outages = spec
            .flaky
            .then(|| Outages::new(device_rng(&fleet, &spec.id, 3), fleet.start));
        let start_date = home.timezone.to_datetime(fleet.start).date();
        let mut logic = Self {
            id: spec.id.clone(),
            index: spec.index,
            readings_topic: wire::readings_topic(&spec.id),
            rng: device_rng(&fleet, &spec.id, 0),
            home,
            fleet,
            client,
            want,
            room,
            has_role,
            cued: cued.into(),
            plan: VecDeque::new(),
            plan_date: start_date,
            plan_end: Timestamp::MIN,
            buffer: VecDeque::new(),
            buffer_since: None,
            kept: BTreeMap::new(),
            to_send: BTreeSet::new(),
            next_counter: 1,
            link_up: false,
            offline: false,
            ever_up: false,
            outages,
            next_resend_scan: Instant::now(),
            channel_full: false,
        };
        logic.load_day(start_date);
        logic
    }

    /// Loads this device's share of the home's plan for `date`.
    fn load_day(&mut self, date: Date) {
        self.plan_date = date;
        let Some((_, end)) = schedule::day_bounds(&self.home.timezone, date) else {
            // Outside jiff's calendar: nothing more will ever happen.
            self.plan_end = Timestamp::MAX;
            return;
        };
        self.plan_end = end;
        let start = self.fleet.start;
        while self.cued.front().is_some_and(|r| r.ts < end) {
            if let Some(reading) = self.cued.pop_front()
                && reading.ts >= start
            {
                self.plan.push_back(reading);
            }
        }
        if !self.has_role {
            return;
        }
        let plan = schedule::day_plan(
            &self.home.profile,
            &self.home.timezone,
            date,
            &self.fleet.behaviour,
        );
        self.plan.extend(
            plan.into_iter()
                .filter(|p| schedule::assign(p.source, &self.home.kinds) == Some(self.index))
                .map(|p| p.reading)
                .filter(|r| r.ts >= start),
        );
        self.plan.make_contiguous().sort_by_key(|r| r.ts);
    }

    fn can_send(&self) -> bool {
        self.link_up && !self.offline
    }

    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            let now = Instant::now();
            self.advance(now);
            let wake = self.next_wakeup(now);
            let waiting_for_room = self.channel_full && self.can_send();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_link_event(event),
                    None => break,
                },
                _ = self.room.notified(), if waiting_for_room => {}
                _ = sleep_until(wake) => {}
            }
        }
        if self.link_up {
            sub(&self.fleet.counters.connected, 1);
        }
        add(&self.fleet.counters.unreceipted, self.kept.len() as u64);
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Up => {
                if !self.link_up {
                    add(&self.fleet.counters.connected, 1);
                }
                self.link_up = true;
                if self.ever_up {
                    add(&self.fleet.counters.reconnects, 1);
                }
                self.ever_up = true;
                // Everything sent before and not receipted goes again, with
                // the same msg_id and payload.
                let again = self
                    .kept
                    .iter()
                    .filter(|(_, k)| k.sent_at.is_some() && !k.garbage)
                    .map(|(c, _)| *c);
                self.to_send.extend(again);
            }
            LinkEvent::Down => {
                if self.link_up {
                    sub(&self.fleet.counters.connected, 1);
                }
                self.link_up = false;
            }
            LinkEvent::Receipt(publish) => self.on_receipt(&publish.payload),
        }
    }

    fn on_receipt(&mut self, payload: &[u8]) {
        let receipt = match Receipt::from_json(payload) {
            Ok(r) => r,
            Err(error) => {
                debug!(device = %self.id, error = %error, "ignoring an unreadable receipt");
                return;
            }
        };
        let counter = receipt
            .msg_id
            .strip_prefix(self.fleet.run_prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(counter) = counter else {
            debug!(device = %self.id, "ignoring a receipt for another run's message");
            return;
        };
        let c = &self.fleet.counters;
        add(&c.receipts, 1);
        add(&c.accepted, receipt.accepted as u64);
        add(&c.duplicates, receipt.duplicates as u64);
        add(&c.rejected, receipt.rejected.len() as u64);
        if receipt.error.is_some() {
            add(&c.refused_messages, 1);
        }
        if let Some(sent_at) = self.kept.remove(&counter).and_then(|k| k.sent_at) {
            c.record_latency(sent_at.elapsed());
        }
        self.to_send.remove(&counter);
    }

    /// Does everything due at `now`.
    fn advance(&mut self, now: Instant) {
        let sim_now = self.fleet.clock.sim_at(now);
        self.outage_transitions(sim_now);
        self.take_due_readings(sim_now, now);
        if self.can_send() {
            self.make_messages(now, sim_now);
        }
        self.scan_for_resends(now);
        if self.can_send() {
            self.hand_to_client(now);
        }
    }

    fn outage_transitions(&mut self, sim_now: Timestamp) {
        let Some(outages) = &mut self.outages else {
            return;
        };
        match outages.back_at {
            Some(back) if sim_now >= back => {
                outages.back_at = None;
                outages.next_drop = next_outage(&mut outages.rng, sim_now);
                self.offline = false;
                debug!(device = %self.id, "device comes back online");
                // The link outlives the logic; a failed send means shutdown.
                let _ = self.want.send(Want::Online);
            }
            None if sim_now >= outages.next_drop => {
                let minutes = outages.rng.random_range(2..90);
                let back = outages
                    .next_drop
                    .checked_add(SignedDuration::from_mins(minutes))
                    .unwrap_or(Timestamp::MAX);
                outages.back_at = Some(back);
                self.offline = true;
                let _ = self.want.send(Want::Offline);
            }
            _ => {}
        }
    }

    fn take_due_readings(&mut self, sim_now: Timestamp, now: Instant) {
        loop {
            while self.plan.front().is_some_and(|r| r.ts <= sim_now) {
                if let Some(reading) = self.plan.pop_front() {
                    self.buffer_reading(reading, now);
                }
            }
            if !self.plan.is_empty() || !self.has_role || self.plan_end > sim_now {
                return;
            }
            match self.plan_date.tomorrow() {
                Ok(next) => self.load_day(next),
                Err(_) => {
                    self.plan_end = Timestamp::MAX;
                    return;
                }
            }
        }
    }

    fn buffer_reading(&mut self, reading: Reading, now: Instant) {
        if self.buffer.len() >= self.fleet.max_buffered_readings {
            // A real device's memory is finite too: the oldest reading goes.
            self.buffer.pop_front();
            add(&self.fleet.counters.dropped_readings, 1);
        }
        if self.buffer.is_empty() {
            self.buffer_since = Some(now);
        }
        self.buffer.push_back(reading);
    }

    /// Turns buffered readings into messages: a full batch at once, a partial
    /// one after the linger time.
    fn make_messages(&mut self, now: Instant, sim_now: Timestamp) {
        let per_message = self.fleet.readings_per_message;
        let lingered = self
            .buffer_since
            .is_some_and(|since| now >= since + self.fleet.batch_linger);
        let mut made = false;
        while !self.buffer.is_empty() && self.kept.len() < self.fleet.max_unreceipted {
            if self.buffer.len() < per_message && !lingered {
                break;
            }
            if self.rng.random_bool(self.fleet.malformed_rate) {
                let kind = Garbage::pick(&mut self.rng);
                let counter = self.next_msg_counter();
                let payload = kind.payload(&self.msg_id(counter), sim_now);
                self.keep(counter, payload, 0, true);
                continue;
            }
            let n = per_message.min(self.buffer.len());
            let batch: Vec<Reading> = self.buffer.drain(..n).collect();
            self.encode_batch(&batch);
            made = true;
        }
        if self.buffer.is_empty() {
            self.buffer_since = None;
        } else if made {
            self.buffer_since = Some(now);
        }
    }

    /// Encodes a batch as one message, halving it while the payload would be
    /// larger than ingest accepts.
    fn encode_batch(&mut self, batch: &[Reading]) {
        let counter = self.next_msg_counter();
        let payload = wire::encode_message(Some(&self.msg_id(counter)), batch);
        if payload.len() > self.fleet.max_payload_bytes && batch.len() > 1 {
            let (a, b) = batch.split_at(batch.len() / 2);
            self.encode_batch(a);
            self.encode_batch(b);
            return;
        }
        self.keep(counter, payload, batch.len() as u64, false);
    }

    fn next_msg_counter(&mut self) -> u64 {
        let c = self.next_counter;
        self.next_counter += 1;
        c
    }

    fn msg_id(&self, counter: u64) -> String {
        format!("{}-{counter}", self.fleet.run_prefix)
    }

    fn keep(&mut self, counter: u64, payload: Vec<u8>, readings: u64, garbage: bool) {
        self.kept.insert(
            counter,
            Kept {
                payload,
                readings,
                sent_at: None,
                garbage,
            },
        );
        self.to_send.insert(counter);
    }

    /// Queues messages whose receipt is overdue; forgets garbage nobody answers.
    fn scan_for_resends(&mut self, now: Instant) {
        if now < self.next_resend_scan || self.kept.is_empty() {
            return;
        }
        let after = self.fleet.resend_after;
        self.next_resend_scan =
            now + (after / 5).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let mut forget = Vec::new();
        for (counter, kept) in &self.kept {
            let Some(sent_at) = kept.sent_at else {
                continue;
            };
            if kept.garbage {
                if now >= sent_at + after * GARBAGE_PATIENCE {
                    forget.push(*counter);
                }
            } else if now >= sent_at + after {
                self.to_send.insert(*counter);
            }
        }
        for counter in forget {
            self.kept.remove(&counter);
            self.to_send.remove(&counter);
        }
    }

    /// Publishes queued messages until rumqttc's request channel is full.
    fn hand_to_client(&mut self, now: Instant) {
        self.channel_full = false;
        while let Some(&counter) = self.to_send.first() {
            let Some(kept) = self.kept.get_mut(&counter) else {
                self.to_send.remove(&counter);
                continue;
            };
            let sent = self.client.try_publish(
                self.readings_topic.as_str(),
                QoS::AtLeastOnce,
                false,
                kept.payload.clone(),
            );
            if sent.is_err() {
                self.channel_full = true;
                return;
            }
            self.to_send.remove(&counter);
            let c = &self.fleet.counters;
            if kept.sent_at.is_some() {
                add(&c.resent, 1);
            } else {
                add(&c.messages_sent, 1);
                add(&c.readings_sent, kept.readings);
                if kept.garbage {
                    add(&c.malformed_sent, 1);
                }
            }
            kept.sent_at = Some(now);
        }
    }

    /// The earliest instant something could become due.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let clock = &self.fleet.clock;
        let mut wake = now + Duration::from_secs(60);
        if self.has_role {
            let next = self.plan.front().map_or(self.plan_end, |r| r.ts);
            if next < Timestamp::MAX {
                wake = wake.min(clock.instant_for(next));
            }
        }
        if let Some(outages) = &self.outages {
            wake = wake.min(clock.instant_for(outages.back_at.unwrap_or(outages.next_drop)));
        }
        if self.can_send()
            && self.kept.len() < self.fleet.max_unreceipted
            && let Some(since) = self.buffer_since
        {
            wake = wake.min(since + self.fleet.batch_linger);
        }
        if !self.kept.is_empty() {
            wake = wake.min(self.next_resend_scan);
        }
        wake.max(now + Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_spaced_and_never_sooner_than_ten_minutes() {
        let mut rng = seed::rng(1, Salt::Device, &[1]);
        let t0 = Timestamp::from_second(1_800_000_000).expect("ts");
        let gaps: Vec<f64> = (0..2000)
            .map(|_| next_outage(&mut rng, t0).duration_since(t0).as_secs_f64())
            .collect();
        assert!(gaps.iter().all(|g| *g >= 600.0));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(
            (6.5 * 3600.0..9.5 * 3600.0).contains(&mean),
            "mean gap {mean}"
        );
    }
}
