//! The approval workflow over in-memory fakes of the ports, a module a duty (as in
//! `src/approvals/`): votes counted or refused, the workflow resumed exactly once, messages kept
//! current, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod close;
mod notify;
mod refresh;
mod sweep;
mod tell;
mod vote;

use std::sync::Arc;

use regate_core::approvals::{Closed, SweepBudget, VoteResult, REJECTED_ERROR};
use regate_core::event::EventKind;
use regate_core::ports::{Clock, ExecutionStatus, StoreError, TaskTokenError};
use regate_core::{ApprovalState, TaskToken};
use regate_testkit::{
    ballot, execution_of, first_evaluation, open, rejecting, request, Fakes, MemoryApprovals,
    Resumed,
};

const DEPLOY: (&str, &str, &str) = ("deploy", "service", "payments");
const LEDGER: (&str, &str, &str) = ("deploy", "service", "ledger");
const IAM: (&str, &str, &str) = ("iam_change", "iam_role", "payments");

/// Fakes and their workflow, with request `id` (a production `change`) opened on token-1.
async fn opened(id: &str, change: (&str, &str, &str)) -> (Fakes, MemoryApprovals) {
    let fakes = Fakes::default();
    let approvals = fakes.approvals();
    let (action, kind, name) = change;
    let request = request(id).change(action, "production", kind, name).build();
    open(&approvals, &request, "token-1").await;
    (fakes, approvals)
}

/// A click whose vote is stored but whose log entry fails (the click ends with the error).
async fn vote_stored_not_logged(f: &Fakes, s: &MemoryApprovals, id: &str, voter: &str) {
    f.log
        .fail_kind(EventKind::Vote, StoreError::Throttled("busy".into()));
    s.vote(&ballot(id, voter)).await.unwrap_err();
    f.log.fault.clear();
    assert_eq!(f.kinds(id), [EventKind::Notified], "nothing logged");
}

/// The `vote` events of request `id`, as (voter, reasons).
fn vote_events(f: &Fakes, id: &str) -> Vec<(String, Vec<String>)> {
    f.log
        .of(id)
        .into_iter()
        .filter(|e| e.kind == EventKind::Vote)
        .map(|e| (e.actor.unwrap_or_default(), e.reasons))
        .collect()
}
