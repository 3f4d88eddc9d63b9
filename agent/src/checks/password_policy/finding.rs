//! What the parts of the `password_policy` evaluator conclude, shared by
//! `evaluate.rs` and `stack.rs`. Pure.

/// What one part of the rule concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finding {
    Pass(String),
    Fail(String, Fix),
    Unknown(String),
}

/// What a person should do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fix {
    InstallPwquality,
    RaiseMinlen {
        positive_credits: Vec<String>,
        pam_argument: Option<String>,
    },
    RaiseMinclass {
        pam_argument: Option<String>,
    },
    TurnEnforcingOn {
        source: String,
    },
    MakeRequisite {
        location: String,
        control: String,
    },
    /// The quality module is skipped when `skipper` succeeds.
    CheckBeforeSetting {
        module: &'static str,
        location: String,
        skipper: String,
    },
    /// `writer` asks for a password again after the quality module
    /// rejected one.
    UseAuthtok {
        module: &'static str,
        location: String,
        writer: String,
    },
    /// pam_cracklib reads only its own arguments.
    CracklibArguments {
        location: String,
        arguments: Vec<String>,
    },
    SetMaxDays,
}

/// Stands for the stack's root file(s) in a finding's message until stacks
/// with the same finding are merged.
pub(super) const STACK: &str = "{stack}";
