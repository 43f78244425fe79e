//! The crate-level error, and the stable names errors carry across the Step Functions boundary.

use crate::canonical::CanonicalError;
use crate::chain::BrokenLink;
use crate::policy::PolicyError;
use crate::request::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error(transparent)]
    BrokenChain(#[from] BrokenLink),
}

impl CoreError {
    /// The error type name Step Functions sees (`Retry`/`Catch` match on it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::Policy(_) | Self::Canonical(_) => "PolicyError",
            Self::BrokenChain(_) => "DecisionLog.BrokenChain",
        }
    }
}
