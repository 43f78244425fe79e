//! The pending store in memory, honouring every condition the DynamoDB adapter writes under,
//! so domain tests see the same races as moto.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use regate_core::pending::{
    ApprovalState, Closing, Conditional, DueApproval, MessageRef, PendingApproval, TaskToken,
};
use regate_core::ports::{PendingStore, StoreError};
use regate_core::rules::normalize;
use regate_core::{Evaluation, Vote};

use crate::Fault;

/// The pending store in memory, with the same conditions as DynamoDB's.
#[derive(Clone, Default)]
pub struct MemoryPending {
    table: Arc<Mutex<Table>>,
    pub fault: Fault<StoreError>,
    /// Updates to let through before one whose answer is lost (see `lose_next_answer_after`).
    lose_answer: Arc<Mutex<Option<usize>>>,
    /// Votes stored just before the next vote's write (see `vote_first`).
    racing_votes: Arc<Mutex<Vec<Vote>>>,
    /// What was read, as DynamoDB would bill it (see `reads`).
    items_read: Arc<AtomicUsize>,
    due_listed: Arc<AtomicUsize>,
}

/// What the store has been asked to read so far: whole items (`get`), and entries of the due
/// index (`due`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub items: usize,
    pub due_entries: usize,
}

/// The items, and the due index DynamoDB keeps beside them (`by_due`): every item with a due
/// time, in due order, so listing what is due reads only that.
#[derive(Default)]
struct Table {
    items: BTreeMap<String, PendingApproval>,
    by_due: BTreeSet<(DateTime<Utc>, String)>,
}

impl Table {
    /// Stores `approval` (replacing the item with its id), and its due index entry.
    fn put(&mut self, approval: PendingApproval) {
        let id = approval.request_id.clone();
        if let Some(due) = self.items.get(&id).and_then(|old| old.due_at) {
            self.by_due.remove(&(due, id.clone()));
        }
        if let Some(due) = approval.due_at {
            self.by_due.insert((due, id.clone()));
        }
        self.items.insert(id, approval);
    }

    /// Changes a stored item (and its due index entry); false when there is none.
    fn change(&mut self, request_id: &str, change: impl FnOnce(&mut PendingApproval)) -> bool {
        let Some(mut item) = self.items.get(request_id).cloned() else {
            return false;
        };
        change(&mut item);
        self.put(item);
        true
    }
}

impl MemoryPending {
    fn update(
        &self,
        request_id: &str,
        allowed: impl FnOnce(&PendingApproval) -> bool,
        change: impl FnOnce(&mut PendingApproval),
    ) -> Result<Conditional, StoreError> {
        self.fault.check()?;
        let lost = {
            let mut countdown = self.lose_answer.lock().unwrap();
            match *countdown {
                Some(0) => {
                    *countdown = None;
                    true
                }
                Some(n) => {
                    *countdown = Some(n - 1);
                    false
                }
                None => false,
            }
        };
        let mut table = self.table.lock().unwrap();
        let allowed = table.items.get(request_id).map(allowed);
        Ok(match allowed {
            Some(true) => {
                table.change(request_id, |item| {
                    change(item);
                    item.version += 1;
                });
                let now = Box::new(table.items[request_id].clone());
                // A lost answer: the write commits, the SDK's retry then fails its condition
                // and reads the item as it is now.
                if lost {
                    Conditional::Lost(Some(now))
                } else {
                    Conditional::Done(now)
                }
            }
            Some(false) => Conditional::Lost(Some(Box::new(table.items[request_id].clone()))),
            None => Conditional::Lost(None),
        })
    }

    /// After `updates` more conditional updates, the next one commits but answers as if it
    /// lost (a committed write whose response was lost, retried by the SDK).
    pub fn lose_next_answer_after(&self, updates: usize) {
        *self.lose_answer.lock().unwrap() = Some(updates);
    }

    /// Stores `vote` just before the next vote's write, as another click's write that got
    /// there first (between that click's read and its write).
    pub fn vote_first(&self, vote: Vote) {
        self.racing_votes.lock().unwrap().push(vote);
    }

    /// Changes the stored item behind the workflow's back (a crash's leftovers, say).
    pub fn edit(&self, request_id: &str, change: impl FnOnce(&mut PendingApproval)) {
        assert!(self.table.lock().unwrap().change(request_id, change));
    }

    /// The stored item, as a test sees it.
    pub fn item(&self, request_id: &str) -> Option<PendingApproval> {
        self.table.lock().unwrap().items.get(request_id).cloned()
    }

    /// Stores many approvals at once, as they are (a test's backlog), without counting reads.
    pub fn insert_all(&self, approvals: impl IntoIterator<Item = PendingApproval>) {
        let mut table = self.table.lock().unwrap();
        for approval in approvals {
            table.put(approval);
        }
    }

    /// The reads so far.
    pub fn reads(&self) -> Reads {
        Reads {
            items: self.items_read.load(Ordering::Relaxed),
            due_entries: self.due_listed.load(Ordering::Relaxed),
        }
    }
}

impl PendingStore for MemoryPending {
    async fn create(&self, approval: &PendingApproval) -> Result<Conditional, StoreError> {
        self.fault.check()?;
        let mut table = self.table.lock().unwrap();
        if let Some(existing) = table.items.get(&approval.request_id) {
            return Ok(Conditional::Lost(Some(Box::new(existing.clone()))));
        }
        table.put(approval.clone());
        Ok(Conditional::Done(Box::new(approval.clone())))
    }

    async fn get(&self, request_id: &str) -> Result<Option<PendingApproval>, StoreError> {
        self.fault.check()?;
        self.items_read.fetch_add(1, Ordering::Relaxed);
        Ok(self.item(request_id))
    }

    async fn add_messages(
        &self,
        request_id: &str,
        messages: &[MessageRef],
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.messages.extend_from_slice(messages),
        )
    }

    async fn mark_posting(
        &self,
        request_id: &str,
        target_key: &str,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending,
            |i| i.posting.push(target_key.to_string()),
        )
    }

    async fn record_vote(
        &self,
        request_id: &str,
        vote: &Vote,
        version: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        let racing: Vec<Vote> = self.racing_votes.lock().unwrap().drain(..).collect();
        for first in racing {
            self.edit(request_id, |item| {
                let at = regate_core::time::parse_rfc3339(&first.at).unwrap_or_default();
                item.votes.push(first);
                item.version += 1;
                item.due_at = item.next_due(at);
            });
        }
        let voter = normalize(&vote.voter);
        self.update(
            request_id,
            |i| {
                i.state == ApprovalState::Pending
                    && i.version == version
                    && !i.votes.iter().any(|v| normalize(&v.voter) == voter)
            },
            |i| {
                i.votes.push(vote.clone());
                i.due_at = Some(due);
            },
        )
    }

    async fn replace_token(
        &self,
        request_id: &str,
        token: &TaskToken,
    ) -> Result<Conditional, StoreError> {
        self.update(request_id, |i| !i.resumed, |i| i.task_token = token.clone())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<DueApproval>, StoreError> {
        self.fault.check()?;
        let table = self.table.lock().unwrap();
        let due: Vec<DueApproval> = table
            .by_due
            .iter()
            .take_while(|(due_at, _)| *due_at <= now)
            .take(limit)
            .map(|(due_at, request_id)| DueApproval {
                request_id: request_id.clone(),
                due_at: *due_at,
            })
            .collect();
        self.due_listed.fetch_add(due.len(), Ordering::Relaxed);
        Ok(due)
    }

    async fn advance_reminders(
        &self,
        request_id: &str,
        expected_version: u64,
        through: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.reminded_through = through;
                i.due_at = Some(due);
            },
        )
    }

    async fn reschedule(
        &self,
        request_id: &str,
        expected_version: u64,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        // As DynamoDB's: only `due_at` changes, and the version stays.
        self.fault.check()?;
        let mut table = self.table.lock().unwrap();
        let allowed = table
            .items
            .get(request_id)
            .map(|i| !i.resumed && i.version == expected_version);
        if allowed == Some(true) {
            table.change(request_id, |i| i.due_at = Some(due));
            return Ok(Conditional::Done(Box::new(table.items[request_id].clone())));
        }
        let item = table.items.get(request_id).cloned().map(Box::new);
        Ok(Conditional::Lost(item))
    }

    async fn reevaluate(
        &self,
        request_id: &str,
        expected_version: u64,
        evaluation: &Evaluation,
        through: u64,
        at: DateTime<Utc>,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.evaluation = evaluation.clone();
                i.reevaluated_through = through;
                i.evaluated_at = Some(at);
                i.due_at = Some(due);
            },
        )
    }

    async fn claim_resume(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| {
                i.owes_resume()
                    && i.resume_claims == claims_seen
                    && i.resume_until.is_none_or(|held| held <= now)
            },
            |i| {
                i.resume_claims = claims_seen + 1;
                i.resume_until = Some(until);
                i.due_at = Some(until);
            },
        )
    }

    async fn release_resume(
        &self,
        request_id: &str,
        claim: u64,
        now: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| !i.resumed && i.resume_claims == claim,
            |i| {
                i.resume_until = Some(now);
                i.due_at = Some(now);
            },
        )
    }

    async fn settle(
        &self,
        request_id: &str,
        token: &TaskToken,
        state: ApprovalState,
        due: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| !i.resumed && i.task_token == *token,
            |i| {
                i.resumed = true;
                i.state = state;
                i.due_at = Some(due);
            },
        )
    }

    async fn claim_tell(
        &self,
        request_id: &str,
        claims_seen: u64,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| {
                i.owes_tell()
                    && i.tell_claims == claims_seen
                    && i.tell_until.is_none_or(|held| held <= now)
            },
            |i| {
                i.tell_claims = claims_seen + 1;
                i.tell_until = Some(until);
                i.due_at = Some(until);
            },
        )
    }

    async fn told(&self, request_id: &str, claim: u64) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.owes_tell() && i.tell_claims == claim,
            |i| {
                i.requester_told = true;
                i.tell_until = None;
                i.due_at = None;
            },
        )
    }

    async fn transition(
        &self,
        request_id: &str,
        expected_version: u64,
        closing: &Closing,
    ) -> Result<Conditional, StoreError> {
        self.update(
            request_id,
            |i| i.state == ApprovalState::Pending && i.version == expected_version,
            |i| {
                i.state = closing.state;
                i.evaluation = closing.evaluation.clone();
                i.decided_by = closing.decided_by.clone();
                i.decided_at = Some(closing.decided_at);
                i.closed_by = Some(closing.closed_by.clone());
                i.resumed = closing.resumed;
                i.resume_claims += 1;
                i.resume_until = Some(closing.resume_until);
                // Due when the claim lapses: to resume it, or (resumed) to tell its requester.
                i.due_at = Some(closing.resume_until);
            },
        )
    }
}
