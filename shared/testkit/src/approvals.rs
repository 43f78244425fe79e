//! The approval workflow over the in-memory fakes, and how a test opens an approval on it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use regate_core::approvals::Approvals;
use regate_core::pending::TaskToken;
use regate_core::ports::Ports;
use regate_core::{Evaluation, LivePolicy, PolicyEngine, PreparedRequest, Request};

use crate::{
    default_policy, execution_of, FixedClock, MemoryLog, MemoryPending, RecordingChat,
    RecordingMetrics, RecordingTokens,
};

/// The approval workflow's ports in memory: the fakes of this crate.
pub struct MemoryPorts;

impl Ports for MemoryPorts {
    type Log = MemoryLog;
    type Pending = MemoryPending;
    type Tokens = RecordingTokens;
    type Chat = RecordingChat;
    type Clock = FixedClock;
    type Metrics = RecordingMetrics;
}

pub type MemoryApprovals = Approvals<MemoryPorts>;

/// The approval workflow in memory, with a handle on each fake to look at or break.
#[derive(Clone, Default)]
pub struct Fakes {
    pub log: MemoryLog,
    pub pending: MemoryPending,
    pub tokens: RecordingTokens,
    pub chat: RecordingChat,
    pub clock: FixedClock,
    pub metrics: RecordingMetrics,
}

impl Fakes {
    /// An `Approvals` over these fakes (they share state with it) and the default policy.
    pub fn approvals(&self) -> MemoryApprovals {
        self.approvals_with(default_policy())
    }

    /// The same with another policy.
    pub fn approvals_with(&self, policy: PolicyEngine) -> MemoryApprovals {
        self.approvals_with_live(Arc::new(LivePolicy::new(policy)))
    }

    /// The same with a live policy, which may have none loaded.
    pub fn approvals_with_live(&self, policy: Arc<LivePolicy>) -> MemoryApprovals {
        Approvals::new(
            self.log.clone(),
            self.pending.clone(),
            self.tokens.clone(),
            self.chat.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            policy,
        )
    }

    /// The kinds of a request's events, in order.
    pub fn kinds(&self, request_id: &str) -> Vec<regate_core::EventKind> {
        self.log.of(request_id).iter().map(|e| e.kind).collect()
    }
}

/// The default policy's first evaluation of `request` at `now`.
pub fn first_evaluation(request: &Request, now: DateTime<Utc>) -> Evaluation {
    default_policy()
        .evaluate(
            &PreparedRequest::new(request.clone()).unwrap(),
            &[],
            regate_core::EvaluationTime::opening(now),
        )
        .unwrap()
}

/// Opens `request` on `approvals` (as the notifier does) with task token `token`, for the
/// execution named after it ([`execution_of`]).
pub async fn open(approvals: &MemoryApprovals, request: &Request, token: &str) {
    let evaluation = first_evaluation(request, approvals.now());
    let execution = execution_of(&request.id);
    approvals
        .notify(request, &evaluation, &TaskToken::new(token), &execution)
        .await
        .unwrap();
}
