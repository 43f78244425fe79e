//! The stable names errors carry across the Step Functions boundary, and whether Step Functions
//! should retry each: the one place both are decided. Lambda diagnostics take their
//! `error_type` from here, and a test holds the state machine's `Retry` lists to it.

use crate::ports::{ChatError, StoreError, TaskTokenError};

/// Every error name a regate function raises to Step Functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorName {
    InvalidRequest,
    RequestIdInUse,
    PolicyError,
    PolicyUnavailable,
    IdentityUnavailable,
    DecisionLogThrottled,
    DecisionLogUnavailable,
    DecisionLogConflict,
    DecisionLogCorrupt,
    DecisionLogRefused,
    PendingStoreThrottled,
    PendingStoreUnavailable,
    PendingStoreConflict,
    PendingStoreCorrupt,
    PendingStoreRefused,
    StepFunctionsThrottled,
    StepFunctionsUnavailable,
    ChatRateLimited,
    ChatUnavailable,
    ChatRefused,
    ChatNoTarget,
}

/// The steps of the state machine that run regate code, by what they raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The evaluator: validate, evaluate, log.
    Evaluate,
    /// The notifier in `notify` mode: open the approval, post its messages.
    Notify,
    /// The notifier in `expire` mode: close a timed-out approval.
    Expire,
}

impl ErrorName {
    pub const ALL: [Self; 21] = [
        Self::InvalidRequest,
        Self::RequestIdInUse,
        Self::PolicyError,
        Self::PolicyUnavailable,
        Self::IdentityUnavailable,
        Self::DecisionLogThrottled,
        Self::DecisionLogUnavailable,
        Self::DecisionLogConflict,
        Self::DecisionLogCorrupt,
        Self::DecisionLogRefused,
        Self::PendingStoreThrottled,
        Self::PendingStoreUnavailable,
        Self::PendingStoreConflict,
        Self::PendingStoreCorrupt,
        Self::PendingStoreRefused,
        Self::StepFunctionsThrottled,
        Self::StepFunctionsUnavailable,
        Self::ChatRateLimited,
        Self::ChatUnavailable,
        Self::ChatRefused,
        Self::ChatNoTarget,
    ];

    /// The `error_type` Step Functions matches in `Retry` and `Catch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "InvalidRequest",
            Self::RequestIdInUse => "RequestIdInUse",
            Self::PolicyError => "PolicyError",
            Self::PolicyUnavailable => "PolicyUnavailable",
            Self::IdentityUnavailable => "IdentityUnavailable",
            Self::DecisionLogThrottled => "DecisionLog.Throttled",
            Self::DecisionLogUnavailable => "DecisionLog.Unavailable",
            Self::DecisionLogConflict => "DecisionLog.Conflict",
            Self::DecisionLogCorrupt => "DecisionLog.Corrupt",
            Self::DecisionLogRefused => "DecisionLog.Refused",
            Self::PendingStoreThrottled => "PendingStore.Throttled",
            Self::PendingStoreUnavailable => "PendingStore.Unavailable",
            Self::PendingStoreConflict => "PendingStore.Conflict",
            Self::PendingStoreCorrupt => "PendingStore.Corrupt",
            Self::PendingStoreRefused => "PendingStore.Refused",
            Self::StepFunctionsThrottled => "StepFunctions.Throttled",
            Self::StepFunctionsUnavailable => "StepFunctions.Unavailable",
            Self::ChatRateLimited => "Chat.RateLimited",
            Self::ChatUnavailable => "Chat.Unavailable",
            Self::ChatRefused => "Chat.Refused",
            Self::ChatNoTarget => "Chat.NoTarget",
        }
    }

    /// Whether the step that failed with it is worth retrying: throttling, outages and lost
    /// races pass; bad input, bad policy and refusals do not.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::PolicyUnavailable
                | Self::IdentityUnavailable
                | Self::DecisionLogThrottled
                | Self::DecisionLogUnavailable
                | Self::DecisionLogConflict
                | Self::PendingStoreThrottled
                | Self::PendingStoreUnavailable
                | Self::PendingStoreConflict
                | Self::StepFunctionsThrottled
                | Self::StepFunctionsUnavailable
                | Self::ChatRateLimited
                | Self::ChatUnavailable
        )
    }

    pub fn decision_log(error: &StoreError) -> Self {
        match error {
            StoreError::Throttled(_) => Self::DecisionLogThrottled,
            StoreError::Unavailable(_) => Self::DecisionLogUnavailable,
            StoreError::Conflict(_) => Self::DecisionLogConflict,
            StoreError::Corrupt(_) => Self::DecisionLogCorrupt,
            StoreError::Refused(_) => Self::DecisionLogRefused,
        }
    }

    pub fn pending_store(error: &StoreError) -> Self {
        match error {
            StoreError::Throttled(_) => Self::PendingStoreThrottled,
            StoreError::Unavailable(_) => Self::PendingStoreUnavailable,
            StoreError::Conflict(_) => Self::PendingStoreConflict,
            StoreError::Corrupt(_) => Self::PendingStoreCorrupt,
            StoreError::Refused(_) => Self::PendingStoreRefused,
        }
    }

    pub fn chat(error: &ChatError) -> Self {
        match error {
            ChatError::RateLimited(_) => Self::ChatRateLimited,
            ChatError::Unavailable(_) => Self::ChatUnavailable,
            ChatError::Refused(_) => Self::ChatRefused,
        }
    }

    /// `AlreadyClosed` is never raised (it is shown to people), so it has no name of its own.
    pub fn task_tokens(error: &TaskTokenError) -> Self {
        match error {
            TaskTokenError::Throttled(_) => Self::StepFunctionsThrottled,
            TaskTokenError::Unavailable(_) | TaskTokenError::AlreadyClosed(_) => {
                Self::StepFunctionsUnavailable
            }
        }
    }

    /// Which family of errors this is: `DecisionLog`, `Chat`, ... (the part before the dot).
    fn family(self) -> &'static str {
        let name = self.as_str();
        name.split_once('.').map_or(name, |(family, _)| family)
    }
}

impl Step {
    pub const ALL: [Self; 3] = [Self::Evaluate, Self::Notify, Self::Expire];

    /// The names this step's code can raise, from the ports and checks it uses.
    pub fn raises(self) -> Vec<ErrorName> {
        let families: &[&str] = match self {
            Self::Evaluate => &[
                "InvalidRequest",
                "RequestIdInUse",
                "PolicyError",
                "PolicyUnavailable",
                "IdentityUnavailable",
                "DecisionLog",
            ],
            Self::Notify => &[
                "RequestIdInUse",
                "DecisionLog",
                "PendingStore",
                "StepFunctions",
                "Chat",
            ],
            Self::Expire => &["DecisionLog", "PendingStore"],
        };
        ErrorName::ALL
            .into_iter()
            .filter(|name| families.contains(&name.family()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_distinct_and_only_outages_and_races_are_retryable() {
        let names: std::collections::BTreeSet<_> =
            ErrorName::ALL.iter().map(|n| n.as_str()).collect();
        assert_eq!(names.len(), ErrorName::ALL.len());
        assert!(!ErrorName::InvalidRequest.is_retryable());
        assert!(!ErrorName::ChatRefused.is_retryable());
        assert!(ErrorName::decision_log(&StoreError::Throttled(String::new())).is_retryable());
        assert_eq!(
            ErrorName::chat(&ChatError::RateLimited(String::new())).as_str(),
            "Chat.RateLimited"
        );
    }

    #[test]
    fn each_step_raises_its_families_only() {
        assert!(Step::Evaluate.raises().contains(&ErrorName::InvalidRequest));
        assert!(!Step::Evaluate
            .raises()
            .contains(&ErrorName::ChatUnavailable));
        assert!(Step::Notify.raises().contains(&ErrorName::ChatNoTarget));
        assert!(!Step::Notify.raises().contains(&ErrorName::PolicyError));
    }
}
