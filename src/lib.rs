//! mailmover: moves mail stores between formats offline — mbox files and directories, Maildir
//! and Maildir++ trees — with every message byte-exact and its flags, keywords and dates kept.
//!
//! Data flows one way: a [`spec::Store`] is listed into folders, [`folder_map`] selects and
//! renames them, each source folder is read through [`source`], matched against the target's
//! [`target_index`] by [`plan`], and [`sync`] executes the plan and reports a [`report::Summary`].
//!
//! Options come in one way too: [`cli`] (the only module that knows clap) fills the plain
//! settings of [`config`], which checks them into that configuration for every command and for
//! each [`batch`] row; [`engine`] runs one sync of any two stores, cPanel accounts included.

pub mod audit;
pub mod batch;
pub mod cli;
pub mod config;
pub mod contract;
pub mod cpanel;
pub mod deletion;
pub mod engine;
pub mod error;
pub mod events;
pub mod exit;
pub mod flags;
pub mod folder;
pub mod folder_map;
pub mod fsx;
pub mod human;
pub mod inspect;
pub mod interrupt;
pub mod lock;
pub mod logfile;
pub mod manifest;
pub mod message;
pub mod mutf7;

pub mod progress;
pub mod recorded;
pub mod report;
pub mod sign;
pub mod source;
pub mod spec;
pub mod spill;
pub mod store;
pub mod sync;
pub mod target_index;
pub mod verify;
pub mod wire;
