//! End-to-end tests: the real `ondol` binary on free ports with a temporary
//! data directory, driven as devices and operators drive it: MQTT over TCP
//! in, receipts, the SQLite store and the CLI out.

#![allow(clippy::unwrap_used)]

mod alerting;
mod alerting_outage;
mod alerting_roster;
mod api;
mod audit;
mod backfill;
mod cli;
mod compose;
mod dashboard;
mod demo;
mod external_broker;
mod influx;
mod ingest;
mod report;
mod retention;
mod security;
mod services;
mod split_roles;
mod stall;
mod storm;
mod support;
mod tls;
