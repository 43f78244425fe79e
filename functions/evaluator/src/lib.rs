//! The evaluator Lambda: validates a request, evaluates the policy, logs `requested` and `evaluated`. Wired to the Lambda runtime by the workflow issue.
