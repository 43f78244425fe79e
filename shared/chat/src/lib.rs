//! Slack and Microsoft Teams: message builders, signature and JWT verification, Web API clients.
