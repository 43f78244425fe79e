//! The callback Lambda behind API Gateway: verifies Slack and Teams clicks, records votes and resumes the workflow once. Wired by the workflow issue.
