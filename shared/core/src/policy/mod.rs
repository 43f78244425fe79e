//! The policy engine on regorus. A bundle (the `.rego` files plus `data.json`) is compiled
//! once at cold start; every evaluation runs on a pooled VM under limits, with time given
//! through the input rather than read inside Rego. Reading bundles from disk and running a
//! bundle's `test_*` rules live in the `regate-policies` crate: this one stays pure.

mod bundle;
mod engine;
mod input;
mod live;
mod opa_bundle;

pub use bundle::{ArchivedBundle, PolicyBundle, PolicyFile, TEST_SUFFIX};
pub use engine::{
    interpreter, EvalLimits, PolicyEngine, DECISION_RULE, DEFAULT_TIME_LIMIT, VOTE_RULE,
};
pub use input::{EvaluationTime, PreparedRequest};
pub use live::LivePolicy;
pub use opa_bundle::{
    der_from_pem, fixed_signature_from_der, Manifest, OpaBundle, MAX_UNPACKED_BYTES,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy does not compile: {0}")]
    Compile(String),
    #[error("data.json is not valid: {0}")]
    Data(String),
    #[error("a bundle path {0}: refused, so that a revision names one bundle only")]
    Path(String),
    #[error("the bundle file cannot be read: {0}")]
    Archive(String),
    #[error("the bundle's signature is refused: {0}")]
    Signature(String),
    #[error("no policy is loaded: {0}")]
    Unavailable(String),
    #[error("the bundle does not match its revision: {0}")]
    Revision(String),
    #[error("the policy does not define {0}")]
    MissingRule(String),
    #[error("evaluating {rule} failed: {message}")]
    Eval { rule: String, message: String },
    #[error("{0} is undefined for this input")]
    Undefined(String),
    #[error("{rule} returned an unusable value: {message}")]
    BadOutput { rule: String, message: String },
}
