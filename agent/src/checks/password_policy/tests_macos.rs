//! Tests of the macOS parser and evaluator of `password_policy`, on the
//! fixtures in `agent/tests/fixtures/macos/password_policy/` (SOURCES.md
//! says where each comes from) and on typed rules where none was found.

use palisade_shared::policy::PasswordPolicy;
use palisade_shared::report::CheckStatus;

use super::tests::policy;

use super::parse_macos::{content_rule, parse_getaccountpolicies};
use super::{MacCharClass, MacContentRule, MacPasswordFacts, PasswordFacts, evaluate};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/macos/password_policy/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn judge(text: &str, policy: &PasswordPolicy) -> (CheckStatus, String) {
    let facts = PasswordFacts::MacOs(MacPasswordFacts {
        account_policies: parse_getaccountpolicies(text),
    });
    let verdict = evaluate(&facts, policy);
    (verdict.status, verdict.summary)
}

#[test]
fn the_default_policy_is_four_characters() {
    let policies = parse_getaccountpolicies(&fixture("pwpolicy-default-4-chars.txt")).unwrap();
    assert_eq!(policies.content.len(), 1);
    assert_eq!(policies.content[0].rule, MacContentRule::MinLength(4));
    let (status, summary) = judge(
        &fixture("pwpolicy-default-4-chars.txt"),
        &policy(12, None, None),
    );
    assert_eq!(status, CheckStatus::Fail, "{summary}");
    assert!(summary.contains("is 4"), "{summary}");
    assert_eq!(
        judge(
            &fixture("pwpolicy-default-4-chars.txt"),
            &policy(4, None, None)
        )
        .0,
        CheckStatus::Pass
    );
}

#[test]
fn the_man_page_example_reads_expiry_and_lockout_category() {
    let policies = parse_getaccountpolicies(&fixture("pwpolicy-manpage-example.plist")).unwrap();
    assert_eq!(policies.expires_every_days, Some(30));
    assert_eq!(policies.content[0].rule, MacContentRule::MinLength(8));
    assert_eq!(
        judge(
            &fixture("pwpolicy-manpage-example.plist"),
            &policy(8, None, Some(90))
        )
        .0,
        CheckStatus::Pass
    );
    assert_eq!(
        judge(
            &fixture("pwpolicy-manpage-example.plist"),
            &policy(8, None, Some(14))
        )
        .0,
        CheckStatus::Fail
    );
}

#[test]
fn a_cis_style_policy_gives_length_classes_lockout_and_expiry() {
    let text = fixture("pwpolicy-cis-12-complex.txt");
    let policies = parse_getaccountpolicies(&text).unwrap();
    assert_eq!(policies.max_failed_authentications, Some(5));
    assert_eq!(policies.lockout_seconds, Some(900));
    assert_eq!(policies.expires_every_days, Some(365));
    let rules: Vec<_> = policies.content.iter().map(|p| p.rule.clone()).collect();
    assert_eq!(
        rules,
        [
            MacContentRule::MinLength(12),
            MacContentRule::Requires(MacCharClass::Letter),
            MacContentRule::Requires(MacCharClass::Digit),
            MacContentRule::Requires(MacCharClass::Symbol),
        ]
    );
    assert_eq!(
        judge(&text, &policy(12, Some(3), None)).0,
        CheckStatus::Pass
    );
    let (status, summary) = judge(&text, &policy(12, Some(4), None));
    assert_eq!(status, CheckStatus::Fail, "{summary}");
    assert_eq!(judge(&text, &policy(14, None, None)).0, CheckStatus::Fail);
    let facts = PasswordFacts::MacOs(MacPasswordFacts {
        account_policies: Ok(policies),
    });
    let verdict = evaluate(&facts, &policy(12, None, None));
    assert_eq!(
        verdict.evidence["account_policies"]["max_failed_authentications"],
        5
    );
}

#[test]
fn no_account_policies_is_a_certain_failure() {
    let (status, summary) = judge(&fixture("pwpolicy-no-policies.txt"), &policy(8, None, None));
    assert_eq!(status, CheckStatus::Fail, "{summary}");
    assert!(
        summary.contains("no account policy sets a minimum"),
        "{summary}"
    );
    // Typed: an empty output and an empty plist dictionary are the same.
    assert_eq!(judge("", &policy(8, None, None)).0, CheckStatus::Fail);
    let empty = "Getting global account policies\n<?xml version=\"1.0\" \
                 encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict/>\n</plist>\n";
    assert_eq!(judge(empty, &policy(8, None, None)).0, CheckStatus::Fail);
}

#[test]
fn length_regexes() {
    let table = [
        (
            "policyAttributePassword matches '.{4,}+'",
            MacContentRule::MinLength(4),
        ),
        (
            "policyAttributePassword matches '^.{12,}$'",
            MacContentRule::MinLength(12),
        ),
        (
            "policyAttributePassword matches '.{15,}'",
            MacContentRule::MinLength(15),
        ),
        (
            "policyAttributePassword matches '.{8,64}'",
            MacContentRule::MinLength(8),
        ),
        (
            "policyAttributePassword matches '.{8,}?'",
            MacContentRule::MinLength(8),
        ),
        (
            "policyAttributePassword matches '(.*[A-Z].*){1,}+'",
            MacContentRule::Requires(MacCharClass::Upper),
        ),
        (
            "policyAttributePassword matches '(.*[a-z].*){1,}+'",
            MacContentRule::Requires(MacCharClass::Lower),
        ),
        (
            "policyAttributePassword matches '^(?=.*[A-Z]).{12,}$'",
            MacContentRule::Unrecognised {
                mentions_length: true,
            },
        ),
        (
            "policyAttributePassword matches '[[:alnum:]]+'",
            MacContentRule::Unrecognised {
                mentions_length: false,
            },
        ),
        (
            "policyAttributePassword != policyAttributeRecordName",
            MacContentRule::Other,
        ),
    ];
    for (content, want) in table {
        assert_eq!(content_rule(content), want, "{content}");
    }
}

#[test]
fn an_unreadable_length_regex_is_unknown_not_fail() {
    let text = "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>\
        <key>policyCategoryPasswordContent</key><array><dict><key>policyContent</key>\
        <string>policyAttributePassword matches '^(?=.*[0-9]).{12,}$'</string></dict>\
        </array></dict></plist>";
    let (status, summary) = judge(text, &policy(12, None, None));
    assert_eq!(status, CheckStatus::Unknown, "{summary}");
}

#[test]
fn broken_outputs_are_unknown() {
    assert_eq!(
        judge(
            "pwpolicy: Operation is not supported by the directory node.",
            &policy(8, None, None)
        )
        .0,
        CheckStatus::Unknown
    );
    assert_eq!(
        judge(
            "Getting global account policies\n<?xml version=\"1.0\"?><plist><dict>",
            &policy(8, None, None)
        )
        .0,
        CheckStatus::Unknown
    );
    let facts = PasswordFacts::MacOs(MacPasswordFacts {
        account_policies: Err("`pwpolicy` did not finish within 5 s".into()),
    });
    assert_eq!(
        evaluate(&facts, &policy(8, None, None)).status,
        CheckStatus::Unknown
    );
}
