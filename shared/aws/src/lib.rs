//! AWS adapters for the ports of `regate-core`: the DynamoDB decision log and pending store, Step Functions task tokens, configuration and secrets.
