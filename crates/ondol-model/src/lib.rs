//! The domain vocabulary of Ondol: no IO, no async.
//!
//! - [`id`]: validated identifiers for devices, residents and staff.
//! - [`reading`]: reading types, their units, ranges and categories (DESIGN §2).
//! - [`reason`]: why a reading or message was refused ([`ReasonCode`]).
//! - [`wire`]: decoding device messages (Ondol JSON and SenML packs), status
//!   messages, receipts and the topic layout.
//! - [`roster`]: residents, devices, staff and check-in plans.
//! - [`alert`]: alert rules, severities, lifecycle and outcomes (DESIGN §4).
//! - [`backoff`]: jittered exponential backoff for reconnects.
//! - [`condition`]: `system_outage` conditions raised by ingest and the sink.
//! - [`clock`]: the injected wall clock ([`Clock`]) with a manual one for tests.

pub mod alert;
pub mod backoff;
pub mod clock;
pub mod condition;
pub mod id;
pub mod reading;
pub mod reason;
pub mod roster;
pub mod serde_duration;
pub mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use id::{DeviceId, IdError, ResidentId, StaffId};
pub use reading::{Category, CheckinValue, DoorState, Reading, ReadingType, ReadingValue};
pub use reason::{ReasonCode, Rejection};
