//! In-memory fakes of the `regate-core` ports and shared fixtures, for unit tests of handlers
//! and of the domain workflow. They keep the same contracts as the real adapters (conditional
//! writes, one vote per person, append-only chains) so tests of the callers mean something.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use regate_core::chain::next_event;
use regate_core::decision::NotifyTarget;
use regate_core::event::{Event, EventDraft};
use regate_core::ports::{
    ApprovalState, ApprovalView, ChatError, ChatPlatform, Closing, Conditional, DecisionLog,
    MessageRef, PendingApproval, PendingStore, StoreError, TaskToken, TaskTokenError, TaskTokens,
};
use regate_core::rules::normalize;
use regate_core::{PolicyBundle, PolicyEngine, Request, Vote};

/// The decision log in memory.
#[derive(Clone, Default)]
pub struct MemoryLog {
    events: Arc<Mutex<BTreeMap<String, Vec<Event>>>>,
}

impl MemoryLog {
    pub fn of(&self, request_id: &str) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .get(request_id)
            .cloned()
            .unwrap_or_default()
    }
}

impl DecisionLog for MemoryLog {
    async fn append(
        &self,
        request_id: &str,
        draft: EventDraft,
        at: DateTime<Utc>,
    ) -> Result<Event, StoreError> {
        let mut all = self.events.lock().unwrap();
        let chain = all.entry(request_id.to_string()).or_default();
        let event = next_event(request_id, chain.last(), draft, at).unwrap();
        chain.push(event.clone());
        Ok(event)
    }

    async fn events(&self, request_id: &str) -> Result<Vec<Event>, StoreError> {
        Ok(self.of(request_id))
    }
}

/// The pending store in memory, with the same conditions as DynamoDB's.
#[derive(Clone, Default)]
pub struct MemoryPending {
    items: Arc<Mutex<BTreeMap<String, PendingApproval>>>,
}

impl MemoryPending {
    fn update(
        &self,
        request_id: &str,
        allowed: impl FnOnce(&PendingApproval) -> bool,
        change: impl FnOnce(&mut PendingApproval),
    ) -> Conditional {
        let mut items = self.items.lock().unwrap();
        match items.get_mut(request_id) {
            Some(item) if allowed(item) => {
                change(item);
                item.version += 1;
                Conditional::Done(Box::new(item.clone()))
            }
            Some(item) => Conditional::Lost(Some(Box::new(item.clone()))),
            None => Conditional::Lost(None),
        }
    }
}

impl PendingStore for MemoryPending {
    async fn create(&self, approval: &PendingApproval) -> Result<Conditional, StoreError> {
        let mut items = self.items.lock().unwrap();
        if let Some(existing) = items.get(&approval.request_id) {
            return Ok(Conditional::Lost(Some(Box::new(existing.clone()))));
        }
        items.insert(approval.request_id.clone(), approval.clone());
        Ok(Conditional::Done(Box::new(approval.clone())))
    }

    async fn get(&self, request_id: &str) -> Result<Option<PendingApproval>, StoreError> {
        Ok(self.items.lock().unwrap().get(request_id).cloned())
    }

    async fn add_messages(
        &self,
        request_id: &str,
        messages: &[MessageRef],
    ) -> Result<Conditional, StoreError> {
        Ok(self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.messages.extend_from_slice(messages),
        ))
    }

    async fn record_vote(&self, request_id: &str, vote: &Vote) -> Result<Conditional, StoreError> {
        let voter = normalize(&vote.voter);
        Ok(self.update(
            request_id,
            |i| {
                i.state == ApprovalState::Pending
                    && !i.votes.iter().any(|v| normalize(&v.voter) == voter)
            },
            |i| i.votes.push(vote.clone()),
        ))
    }

    async fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> Result<Conditional, StoreError> {
        Ok(self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.task_token = token.clone(),
        ))
    }

    async fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> Result<Conditional, StoreError> {
        Ok(self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.state = closing.state;
                i.evaluation = closing.evaluation.clone();
                i.decided_by = closing.decided_by.clone();
                i.decided_at = Some(closing.decided_at);
            },
        ))
    }
}

/// What a workflow was told through its task token.
#[derive(Debug, Clone, PartialEq)]
pub enum Resumed {
    Success {
        token: String,
        output: serde_json::Value,
    },
    Failure {
        token: String,
        error: String,
        cause: String,
    },
}

/// Task tokens that record every call; tokens listed in `closed` answer "already closed".
#[derive(Clone, Default)]
pub struct RecordingTokens {
    pub calls: Arc<Mutex<Vec<Resumed>>>,
    pub closed: Arc<Mutex<Vec<String>>>,
}

impl RecordingTokens {
    pub fn calls(&self) -> Vec<Resumed> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, token: &TaskToken) -> Result<(), TaskTokenError> {
        if self
            .closed
            .lock()
            .unwrap()
            .iter()
            .any(|t| t == token.expose())
        {
            return Err(TaskTokenError::AlreadyClosed("TaskTimedOut".into()));
        }
        Ok(())
    }
}

impl TaskTokens for RecordingTokens {
    async fn succeed(
        &self,
        token: &TaskToken,
        output: &serde_json::Value,
    ) -> Result<(), TaskTokenError> {
        self.check(token)?;
        self.calls.lock().unwrap().push(Resumed::Success {
            token: token.expose().into(),
            output: output.clone(),
        });
        self.closed.lock().unwrap().push(token.expose().into());
        Ok(())
    }

    async fn fail(
        &self,
        token: &TaskToken,
        error: &str,
        cause: &str,
    ) -> Result<(), TaskTokenError> {
        self.check(token)?;
        self.calls.lock().unwrap().push(Resumed::Failure {
            token: token.expose().into(),
            error: error.into(),
            cause: cause.into(),
        });
        self.closed.lock().unwrap().push(token.expose().into());
        Ok(())
    }

    async fn heartbeat(&self, token: &TaskToken) -> Result<(), TaskTokenError> {
        self.check(token)
    }
}

/// A chat platform that records posts and updates; `fail_with` makes every call fail.
#[derive(Clone, Default)]
pub struct RecordingChat {
    pub posts: Arc<Mutex<Vec<(NotifyTarget, ApprovalState)>>>,
    pub updates: Arc<Mutex<Vec<(MessageRef, ApprovalState)>>>,
    pub fail_with: Arc<Mutex<Option<ChatError>>>,
}

impl ChatPlatform for RecordingChat {
    async fn post(
        &self,
        target: &NotifyTarget,
        view: ApprovalView<'_>,
    ) -> Result<Option<MessageRef>, ChatError> {
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        let NotifyTarget::Slack { channel } = target else {
            return Ok(None);
        };
        let mut posts = self.posts.lock().unwrap();
        posts.push((target.clone(), view.approval.state));
        Ok(Some(MessageRef::Slack {
            channel: channel.clone(),
            ts: format!("1700000000.{:06}", posts.len()),
        }))
    }

    async fn update(&self, message: &MessageRef, view: ApprovalView<'_>) -> Result<(), ChatError> {
        if let Some(error) = self.fail_with.lock().unwrap().clone() {
            return Err(error);
        }
        self.updates
            .lock()
            .unwrap()
            .push((message.clone(), view.approval.state));
        Ok(())
    }
}

/// The repository's default policy bundle.
pub fn default_policy() -> PolicyEngine {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    PolicyEngine::compile(&PolicyBundle::load_dir(&dir).unwrap()).unwrap()
}

/// A request as the evaluator would receive it.
pub fn request(
    id: &str,
    action: &str,
    environment: &str,
    resource_type: &str,
    name: &str,
) -> Request {
    Request::from_value(
        &serde_json::json!({"id": id, "action": action, "environment": environment,
            "resource": {"type": resource_type, "name": name},
            "requester": {"id": "dev@example.com", "kind": "human"},
            "initiator": {"id": "ci-bot", "kind": "service"},
            "summary": format!("{action} {name}")}),
        None,
    )
    .unwrap()
}
