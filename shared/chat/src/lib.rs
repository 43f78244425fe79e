//! Chat platforms for regate: approval messages, verification of inbound clicks, and Web API
//! clients. Slack today; Teams arrives with its own module.

pub mod slack;
