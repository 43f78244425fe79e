//! The regate domain: requests, policy decisions, votes, the approval workflow over its ports,
//! the hash-chained decision log and the Rego policy engine. Pure code: no AWS, HTTP, Lambda,
//! file system or environment lives here.

pub mod approvals;
pub mod audit;
pub mod canonical;
pub mod chain;
pub mod checkpoint;
pub mod decision;
pub mod error;
pub mod evaluator;
pub mod event;
pub mod identity;
pub mod metrics;
pub mod pending;
pub mod policy;
pub mod ports;
pub mod request;
pub mod rules;
pub mod time;
pub mod vote;

pub use decision::{Alternative, Decision, Evaluation, NotifyTarget, Outcome, Requirement};
pub use error::ErrorName;
pub use event::{Event, EventDraft, EventKind};
pub use pending::{
    ApprovalState, ApprovalView, Identified, MessageRef, OutcomeNotice, PendingApproval, Platform,
    Reminder, TaskToken, Voter,
};
pub use policy::{
    EvaluationTime, LivePolicy, PolicyBundle, PolicyEngine, PolicyError, PreparedRequest,
};
pub use request::{Identity, IdentityKind, Request, RequestError};
pub use vote::{Ballot, Choice, Vote, VoteCheck};
