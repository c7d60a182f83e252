//! The handlers, one module per area.

pub mod admin;
pub mod alerts;
pub mod dashboard;
pub mod fhir;
pub mod ops;
pub mod overview;
pub mod reports;
pub mod residents;
