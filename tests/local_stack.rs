//! The local stack's own front door: `infra/local/stack status` reports every service up while
//! the stack holds functions (moto's health check must not be one that fails once a Lambda
//! function exists).

use regate_tests::repo_root;

#[test]
fn stack_status_reports_every_service_up_with_functions_deployed() {
    let output = std::process::Command::new(repo_root().join("infra/local/stack"))
        .arg("status")
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for service in ["moto", "proxy", "chat", "functions"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{service}: up"))),
            "{service} is not up: {text}"
        );
    }
    // The stack has its four functions in moto's Lambda, the case that broke the old check.
    let resources = std::fs::read_to_string(repo_root().join(".local/run/resources.json")).unwrap();
    assert!(resources.contains("callback"), "{resources}");
}
