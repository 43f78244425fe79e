//! Task tokens that record what the workflow was told, with executions that can be made to
//! answer as running, finished or gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use regate_core::pending::TaskToken;
use regate_core::ports::{ExecutionStatus, TaskTokenError, TaskTokens};

use crate::Fault;

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

/// Task tokens that record every call; tokens listed in `closed` answer "already closed", and
/// `executions` says how each execution stands (running when not listed).
#[derive(Clone, Default)]
pub struct RecordingTokens {
    pub calls: Arc<Mutex<Vec<Resumed>>>,
    pub closed: Arc<Mutex<Vec<String>>>,
    pub executions: Arc<Mutex<BTreeMap<String, ExecutionStatus>>>,
    pub fault: Fault<TaskTokenError>,
}

impl RecordingTokens {
    pub fn calls(&self) -> Vec<Resumed> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, token: &TaskToken) -> Result<(), TaskTokenError> {
        self.fault.check()?;
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
    async fn execution_status(
        &self,
        execution_id: &str,
    ) -> Result<ExecutionStatus, TaskTokenError> {
        self.fault.check()?;
        Ok(self
            .executions
            .lock()
            .unwrap()
            .get(execution_id)
            .cloned()
            .unwrap_or(ExecutionStatus::Running))
    }

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
}
