//! Enforcement inside rumqttd: a [`Protocol`] wrapper around MQTT 3.1.1
//! ([`V4`]) that sees every packet a client sends, CONNECT first.
//!
//! rumqttd clones the protocol value once per connection, so each
//! connection's [`Guarded`] remembers who connected. On CONNECT it decides
//! the identity (and refuses a bad client id or Will); rumqttd's async auth
//! handler ([`auth_handler`]) then checks the password off the async thread.
//! Every later packet is checked against the *current* access list, so a
//! revoked or rotated device is closed on its next packet (a PINGREQ at the
//! latest, within its keep-alive), and every PUBLISH and SUBSCRIBE against
//! the topic rules. A refused packet never reaches the router: returning an
//! error closes the connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error, Packet, Protocol};
use tokio::sync::Semaphore;

use crate::access::{
    Admission, Gate, Identity, Refusal, may_publish, may_subscribe, staff_token_matches,
};

/// The per-connection guard. Starts without an identity; CONNECT sets it.
#[derive(Clone)]
pub struct Guarded {
    inner: V4,
    gate: Gate,
    identity: Option<Identity>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Guarded {
    pub fn new(gate: Gate) -> Self {
        Self {
            inner: V4,
            gate,
            identity: None,
        }
    }

    fn refuse_connect(&self, client_id: &str, refusal: Refusal) -> Error {
        self.gate
            .stats
            .refused_connects
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!(REFUSED_CONNECTS, "reason" => refusal.as_str()).increment(1);
        tracing::warn!(client_id = %printable(client_id), reason = refusal.as_str(), "MQTT connection refused");
        Error::InvalidProtocol
    }

    fn on_connect(&mut self, packet: &Packet) -> Result<(), Error> {
        let Packet::Connect(connect, _, will, _, login) = packet else {
            return Err(Error::InvalidProtocol);
        };
        let list = self.gate.current();
        let login_name = login.as_ref().map(|l| l.username.as_str());
        let identity = if list.allow_anonymous {
            // Demo mode: rumqttd's password hook is off (it would refuse
            // clients without credentials), so devices are admitted by
            // client id and their passwords grant nothing more. Staff apps
            // still sign in with their token, checked here in constant time:
            // a caseworker identity is never given away.
            let staff = login_name.filter(|name| list.is_token_user(name));
            match list.admission(&connect.client_id, staff) {
                Ok(Admission::Admit(identity) | Admission::VerifyDevice(identity, _)) => identity,
                Ok(Admission::VerifyStaff(identity, token)) => {
                    let password = login.as_ref().map_or("", |l| l.password.as_str());
                    if !staff_token_matches(&token, password) {
                        return Err(self.refuse_connect(&connect.client_id, Refusal::WrongSecret));
                    }
                    identity
                }
                Err(refusal) => return Err(self.refuse_connect(&connect.client_id, refusal)),
            }
        } else {
            match list.admission(&connect.client_id, login_name) {
                Ok(
                    Admission::Admit(identity)
                    | Admission::VerifyDevice(identity, _)
                    | Admission::VerifyStaff(identity, _),
                ) => identity,
                Err(refusal) => return Err(self.refuse_connect(&connect.client_id, refusal)),
            }
        };
        if let Some(will) = will {
            let allowed = std::str::from_utf8(&will.topic).is_ok_and(|t| may_publish(&identity, t));
            if !allowed {
                return Err(self.refuse_connect(&connect.client_id, Refusal::WillNotAllowed));
            }
        }
        self.identity = Some(identity);
        Ok(())
    }

    fn deny(&self, identity: &Identity, what: &'static str, topic: &str) -> Error {
        let counter = match what {
            "publish" => &self.gate.stats.denied_publishes,
            _ => &self.gate.stats.denied_subscribes,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(DENIED_PACKETS, "packet" => what).increment(1);
        tracing::warn!(
            client_id = %identity.client_label(),
            packet = what,
            topic = %printable(topic),
            "MQTT client used a topic it may not; connection closed"
        );
        Error::InvalidProtocol
    }

    fn check(&self, identity: &Identity, packet: &Packet) -> Result<(), Error> {
        if !self.gate.current().is_current(identity) {
            self.gate
                .stats
                .revoked_disconnects
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!(REVOKED_DISCONNECTS).increment(1);
            tracing::warn!(
                client_id = %identity.client_label(),
                "MQTT client's credential was revoked or rotated; connection closed"
            );
            return Err(Error::InvalidProtocol);
        }
        match packet {
            Packet::Connect(..) => Err(Error::InvalidProtocol),
            Packet::Publish(publish, _) => match std::str::from_utf8(&publish.topic) {
                Ok(topic) if may_publish(identity, topic) => Ok(()),
                Ok(topic) => Err(self.deny(identity, "publish", topic)),
                Err(_) => Err(self.deny(identity, "publish", "<not utf-8>")),
            },
            Packet::Subscribe(subscribe, _) => {
                match subscribe
                    .filters
                    .iter()
                    .find(|f| !may_subscribe(identity, &f.path))
                {
                    Some(filter) => Err(self.deny(identity, "subscribe", &filter.path)),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

impl Protocol for Guarded {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        let packet = self.inner.read_mut(stream, max_size)?;
        match &self.identity {
            None => self.on_connect(&packet)?,
            Some(identity) => self.check(identity, &packet)?,
        }
        Ok(unpin(packet))
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        self.inner.write(packet, write)
    }
}

/// Gives a PUBLISH its own copy of topic and payload.
///
/// rumqttd decodes a PUBLISH as slices of the connection's read buffer
/// (10 KiB or more) and keeps the packet in its commit log until the ring
/// wraps. Each stored slice pins the whole buffer it came from, so the
/// log's real footprint was many times the bytes it counts: 0.6–0.9 GiB under
/// sustained load with a 64 MiB ring (BENCHMARKS.md). Copying a reading's
/// few hundred bytes here costs one small allocation and lets the buffer go
/// as soon as the connection has read past it.
fn unpin(packet: Packet) -> Packet {
    match packet {
        Packet::Publish(mut publish, properties) => {
            publish.topic = Bytes::copy_from_slice(&publish.topic);
            publish.payload = Bytes::copy_from_slice(&publish.payload);
            Packet::Publish(publish, properties)
        }
        other => other,
    }
}

/// Refused CONNECTs by reason.
pub const REFUSED_CONNECTS: &str = "ondol_broker_refused_connects_total";
/// Connections closed for a PUBLISH or SUBSCRIBE outside their rights.
pub const DENIED_PACKETS: &str = "ondol_broker_denied_packets_total";
/// Connections closed because their credential was revoked or rotated.
pub const REVOKED_DISCONNECTS: &str = "ondol_broker_revoked_disconnects_total";

/// Client ids and topics come from the network: keep log lines readable.
fn printable(s: &str) -> String {
    s.chars().take(128).filter(|c| !c.is_control()).collect()
}

/// rumqttd's CONNECT password check. The slow secret check (Argon2) runs on
/// the blocking pool, at most `parallelism` at a time, so a reconnect storm
/// neither stalls the listener nor exhausts memory.
pub(crate) fn auth_handler(
    gate: Gate,
    parallelism: usize,
) -> impl Fn(String, String, String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>>
+ Send
+ Sync
+ 'static {
    let permits = Arc::new(Semaphore::new(parallelism.max(1)));
    move |client_id: String, username: String, password: String| {
        let gate = gate.clone();
        let permits = permits.clone();
        Box::pin(async move {
            let list = gate.current();
            let ok = match list.admission(&client_id, Some(&username)) {
                Ok(Admission::Admit(_)) => true,
                Ok(Admission::VerifyStaff(_, token)) => staff_token_matches(&token, &password),
                Ok(Admission::VerifyDevice(_, secret)) => {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return false;
                    };
                    let verify = gate.verify.clone();
                    tokio::task::spawn_blocking(move || verify(&secret, &password))
                        .await
                        .unwrap_or(false)
                }
                // The guard refused it already and said why.
                Err(_) => return false,
            };
            if !ok {
                gate.stats.refused_connects.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(REFUSED_CONNECTS, "reason" => Refusal::WrongSecret.as_str())
                    .increment(1);
                tracing::warn!(client_id = %printable(&client_id), reason = Refusal::WrongSecret.as_str(), "MQTT connection refused");
            }
            ok
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::Publish;

    /// The unpinned packet owns its bytes: nothing of it points into the
    /// connection's read buffer, which can therefore be freed or reused.
    #[test]
    fn a_decoded_publish_no_longer_points_into_the_read_buffer() {
        let mut wire = BytesMut::new();
        let publish = Publish::new(
            "ondol/v1/devices/gw-0001/readings",
            r#"{"msg_id":"a","readings":[{"type":"heart_rate","value":72}]}"#,
            false,
        );
        V4.write(Packet::Publish(publish, None), &mut wire)
            .expect("encode");
        wire.reserve(10 * 1024);
        let start = wire.as_ptr() as usize;
        let end = start + wire.capacity();
        let inside = |b: &Bytes| (start..end).contains(&(b.as_ptr() as usize));

        let mut stream = wire;
        let decoded = V4.read_mut(&mut stream, 1024 * 1024).expect("decode");
        let Packet::Publish(pinned, _) = &decoded else {
            panic!("not a publish: {decoded:?}");
        };
        // The premise: rumqttd's own decoding shares the read buffer.
        assert!(inside(&pinned.payload) && inside(&pinned.topic));

        let Packet::Publish(owned, _) = unpin(decoded) else {
            panic!("unpin changed the packet kind");
        };
        assert!(!inside(&owned.payload), "payload still in the read buffer");
        assert!(!inside(&owned.topic), "topic still in the read buffer");
        assert_eq!(&owned.topic[..], b"ondol/v1/devices/gw-0001/readings");
        assert!(owned.payload.starts_with(b"{\"msg_id\":\"a\""));
    }
}
