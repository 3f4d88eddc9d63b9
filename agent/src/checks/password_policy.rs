//! Rule `password_policy`: placeholder while the rule is written; it reports
//! `unknown`, never `pass`.

use palisade_shared::Policy;
use palisade_shared::policy::PasswordPolicy;

use super::{ProbeError, Rule, Verdict};
use crate::host::Host;

#[derive(Debug)]
pub struct PasswordRule;

impl Rule for PasswordRule {
    type Policy = PasswordPolicy;
    type Facts = ();

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::PASSWORD_POLICY
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.password_policy.as_ref()
    }

    fn probe(&self, _host: &Host, _policy: &Self::Policy) -> Result<(), ProbeError> {
        Err(ProbeError::Undeterminable(
            "this rule is not implemented yet".into(),
        ))
    }

    fn evaluate(&self, _facts: &(), _policy: &Self::Policy) -> Verdict {
        unreachable!("the probe never succeeds")
    }
}
