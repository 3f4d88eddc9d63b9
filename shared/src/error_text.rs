//! An error and its causes as one line, each said once.
//!
//! Many errors put their cause's text in their own message *and* return the
//! cause from `source()` (sqlx's, reqwest's, `io::Error`s made with a
//! message), so printing the chain the usual way (`{:#}`) says the same
//! reason twice or three times. Both binaries print errors through this.

use std::error::Error;

/// `err`'s message, then each cause whose text the line does not already
/// hold, joined by ": ".
pub fn describe(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct Repeats {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Outer(#[source] Repeats);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Outer(Repeats {
            path: "/etc/x",
            source: io,
        });
        assert_eq!(
            describe(&err),
            "cannot start: cannot open /etc/x: no such file"
        );
    }

    #[test]
    fn causes_not_yet_said_are_added() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read the policy")]
        struct Quiet(#[source] std::io::Error);
        let err = Quiet(std::io::Error::other("disk on fire"));
        assert_eq!(describe(&err), "cannot read the policy: disk on fire");
    }
}
