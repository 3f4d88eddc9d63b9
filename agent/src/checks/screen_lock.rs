//! Rule `screen_lock`: placeholder while the rule is written; it reports
//! `unknown`, never `pass`.

use palisade_shared::Policy;
use palisade_shared::policy::ScreenLockPolicy;

use super::{ProbeError, Rule, Verdict};
use crate::host::Host;

#[derive(Debug)]
pub struct ScreenLock;

impl Rule for ScreenLock {
    type Policy = ScreenLockPolicy;
    type Facts = ();

    fn id(&self) -> &'static str {
        palisade_shared::RuleId::SCREEN_LOCK
    }

    fn policy<'p>(&self, policy: &'p Policy) -> Option<&'p Self::Policy> {
        policy.screen_lock.as_ref()
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
