//! The cold-start baseline: the smallest function the Rust runtime can run, which answers each
//! event with itself. It starts the same Tokio runtime and the same Runtime API client as
//! regate's functions, and nothing else.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
