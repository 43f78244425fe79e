//! The notifier Lambda (`.waitForTaskToken`): stores the task token and posts the approval messages; `mode=expire` closes a request out. Wired by the workflow issue.
