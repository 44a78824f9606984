#![forbid(unsafe_code)]
//! pgdeck: a terminal console for PostgreSQL release days, and its headless twin.
//!
//! The rooms, per DESIGN.md's module map: [`config`] (files, environments, connection targets),
//! [`db`] (connecting, sandbox clusters), [`migrate`] (the Prisma-compatible migration engine),
//! [`lint`] (safety lint and deploy plan), and [`cli`] (argument parsing and printing). [`error`] is the one error type they share.

pub mod backup;
pub mod checklist;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod health;
pub mod hooks;
pub mod journal;
pub mod lint;
pub mod migrate;
pub mod monitor;
pub mod release;
pub mod target;
pub mod tui;
pub mod units;
pub mod verify;
