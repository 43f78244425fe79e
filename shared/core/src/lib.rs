//! The regate domain: requests, policy decisions, votes, the hash-chained decision
//! log and the Rego policy engine. Pure code: no AWS, HTTP or Lambda dependency lives here.

pub mod approvals;
pub mod canonical;
pub mod chain;
pub mod decision;
pub mod error;
pub mod event;
pub mod policy;
pub mod ports;
pub mod request;
pub mod rules;
pub mod time;
pub mod vote;

pub use decision::{Decision, Evaluation, NotifyTarget, Outcome, Requirement};
pub use error::CoreError;
pub use event::{Event, EventDraft, EventKind};
pub use policy::{PolicyBundle, PolicyEngine, PolicyError, PreparedRequest};
pub use request::{Identity, IdentityKind, Request, RequestError};
pub use vote::{Choice, Vote, VoteCheck};
