//! The PAM `password` stack as Linux-PAM builds it from `/etc/pam.d` files:
//! line syntax, controls, `include`/`substack`/`@include`, and which entries
//! every password change is sure to pass through.
//!
//! Pure: files come in through a loader function, so the same code reads a
//! host root in the probe and strings in the tests. It decides nothing about
//! compliance; `password_policy.rs` does that.

use std::fmt;

/// `PAM_SUBSTACK_MAX_LEVEL` in Linux-PAM's `libpam/pam_private.h`: an
/// include nested this deep makes libpam abort loading the service.
pub const PAM_MAX_INCLUDE_DEPTH: usize = 16;

/// How many files one stack may pull in. Linux-PAM caps the nesting, not the
/// fan-out, so a file including another twice per level could expand 2^16
/// times; stock stacks read fewer than ten files.
pub const PAM_MAX_FILES_PER_STACK: usize = 64;

/// Where Linux-PAM looks for a file named without a path
/// (`_pam_open_config_file`: `PAM_CONFIG_DF`, then the distribution
/// directory `PAM_CONFIG_DIST_DF`).
pub const PAM_CONFIG_DIRS: [&str; 2] = ["/etc/pam.d", "/usr/lib/pam.d"];

/// What a module's return code makes the stack do (pam.conf(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamAction {
    Ignore,
    Bad,
    Die,
    Ok,
    Done,
    Reset,
    /// Skip the next N entries of the stack.
    Jump(u32),
}

impl PamAction {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "ignore" => Self::Ignore,
            "bad" => Self::Bad,
            "die" => Self::Die,
            "ok" => Self::Ok,
            "done" => Self::Done,
            "reset" => Self::Reset,
            number => Self::Jump(number.parse().ok().filter(|n| *n > 0)?),
        })
    }

    /// Whether a failure with this action makes the password change fail.
    pub fn fails_the_stack(self) -> bool {
        matches!(self, Self::Bad | Self::Die | Self::Ok | Self::Done)
    }

    /// Whether this action ends the stack at once.
    pub fn ends_the_stack(self) -> bool {
        matches!(self, Self::Die | Self::Done)
    }
}

impl fmt::Display for PamAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ignore => f.write_str("ignore"),
            Self::Bad => f.write_str("bad"),
            Self::Die => f.write_str("die"),
            Self::Ok => f.write_str("ok"),
            Self::Done => f.write_str("done"),
            Self::Reset => f.write_str("reset"),
            Self::Jump(n) => write!(f, "{n}"),
        }
    }
}

/// A line's control field, expanded to return-code actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamControl {
    /// As written: `requisite`, `[success=1 default=ignore]`.
    pub text: String,
    /// Explicit actions by return-code name (lower case).
    pub actions: Vec<(String, PamAction)>,
    /// The action for every other return code.
    pub default: PamAction,
}

impl PamControl {
    /// The keywords as `_pam_parse_conf_file` in Linux-PAM's
    /// `libpam/pam_handlers.c` expands them.
    fn keyword(word: &str) -> Option<Self> {
        use PamAction::*;
        let (actions, default): (&[(&str, PamAction)], PamAction) =
            match word.to_ascii_lowercase().as_str() {
                "required" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Bad,
                ),
                "requisite" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Die,
                ),
                "optional" => (&[("success", Ok), ("new_authtok_reqd", Ok)], Ignore),
                "sufficient" => (&[("success", Done), ("new_authtok_reqd", Done)], Ignore),
                _ => return None,
            };
        Some(Self {
            text: word.to_owned(),
            actions: actions.iter().map(|(c, a)| ((*c).to_owned(), *a)).collect(),
            default,
        })
    }

    /// `[code=action …]`. A code left out takes `default=`, or `bad` without
    /// one (pam_handlers.c: "by default the default is to treat as failure").
    /// A pair PAM cannot parse also counts as `bad`.
    fn bracketed(inner: &str) -> Self {
        let mut actions = Vec::new();
        let mut default = PamAction::Bad;
        for pair in inner.split_whitespace() {
            let (code, action) = pair.split_once('=').unwrap_or((pair, ""));
            let action = PamAction::parse(action).unwrap_or(PamAction::Bad);
            let code = code.to_ascii_lowercase();
            if code == "default" {
                default = action;
            } else {
                actions.push((code, action));
            }
        }
        Self {
            text: format!("[{inner}]"),
            actions,
            default,
        }
    }

    /// A control that makes every return code fail, as libpam installs for a
    /// line it cannot parse.
    fn must_fail(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            actions: Vec::new(),
            default: PamAction::Bad,
        }
    }

    /// The action for a return code (`success`, `authtok_err`, …).
    pub fn action_for(&self, code: &str) -> PamAction {
        self.actions
            .iter()
            .rev()
            .find(|(c, _)| c == code)
            .map_or(self.default, |(_, a)| *a)
    }

    /// Every action this control can take, with the code that triggers it.
    pub fn possible_actions(&self) -> impl Iterator<Item = (&str, PamAction)> {
        self.actions
            .iter()
            .map(|(c, a)| (c.as_str(), *a))
            .chain(std::iter::once(("default", self.default)))
    }
}

/// What an entry of the password stack is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamEntryKind {
    /// A module line.
    Module {
        path: String,
        arguments: Vec<String>,
    },
    /// A `substack` line: its own slot, then the substack's entries.
    Substack { target: String },
    /// A line libpam could not parse; it installs one that always fails.
    MustFail { reason: String },
}

/// One entry of the flattened password stack, in the order PAM runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamEntry {
    pub file: String,
    pub line: usize,
    /// The logical line as written (continuations joined, comment dropped).
    pub text: String,
    pub kind: PamEntryKind,
    pub control: PamControl,
    /// The type had a `-` prefix: if the module is not installed, PAM skips
    /// the line silently.
    pub skip_if_missing: bool,
    /// For `-` lines the probe checks the module file; `None` when it did not.
    pub module_installed: Option<bool>,
}

impl PamEntry {
    /// The module's file name (`pam_pwquality.so`), for module lines.
    pub fn module_name(&self) -> Option<&str> {
        match &self.kind {
            PamEntryKind::Module { path, .. } => path.rsplit('/').next(),
            _ => None,
        }
    }

    pub fn arguments(&self) -> &[String] {
        match &self.kind {
            PamEntryKind::Module { arguments, .. } => arguments,
            _ => &[],
        }
    }

    pub fn location(&self) -> String {
        format!("{} line {}", self.file, self.line)
    }
}

/// The password stack behind one root file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamStack {
    /// The PAM service this stack is run for, e.g. `passwd`, or
    /// `chpasswd (no file of its own: libpam runs other)`; `None` for a stack
    /// read from a file alone.
    pub service: Option<String>,
    pub root: String,
    pub entries: Vec<PamEntry>,
    /// Every file read, in order.
    pub files_read: Vec<String>,
    /// Why the stack may be incomplete (unreadable or missing file, nesting
    /// too deep): a stack with problems cannot be judged.
    pub problems: Vec<String>,
}

/// One logical line of a PAM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamLine {
    pub line: usize,
    pub text: String,
    pub parsed: ParsedPamLine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedPamLine {
    Module {
        module_type: String,
        skip_if_missing: bool,
        control: PamControl,
        path: String,
        arguments: Vec<String>,
    },
    /// `TYPE include FILE` or `TYPE substack FILE`.
    Include {
        module_type: String,
        target: String,
        substack: bool,
    },
    /// Debian's `@include FILE`: every type of FILE.
    AtInclude {
        target: String,
    },
    Broken {
        module_type: String,
        reason: String,
    },
}

/// Splits a PAM file into logical lines as libpam's line assembler does: a
/// `#` ends the line's content, a trailing `\` joins the next line, blank
/// lines are skipped. Fields are white-space separated; a control in `[…]`
/// is one field; in arguments `[…]` groups words with spaces (brackets
/// dropped, `\]` for a literal `]`), as in pam.conf(5).
pub fn parse_pam_file(text: &str) -> Vec<PamLine> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (index, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start_line = index + 1;
        }
        let (content, commented) = match raw.find('#') {
            Some(at) => (&raw[..at], true),
            None => (raw, false),
        };
        let trimmed = content.trim_end();
        if !commented {
            if let Some(joined) = trimmed.strip_suffix('\\') {
                pending.push_str(joined);
                pending.push(' ');
                continue;
            }
        }
        pending.push_str(content);
        let logical = std::mem::take(&mut pending);
        let logical = logical.trim();
        if logical.is_empty() {
            continue;
        }
        lines.push(PamLine {
            line: start_line,
            text: logical.to_owned(),
            parsed: parse_logical_line(logical),
        });
    }
    if !pending.trim().is_empty() {
        lines.push(PamLine {
            line: start_line,
            text: pending.trim().to_owned(),
            parsed: parse_logical_line(pending.trim()),
        });
    }
    lines
}

fn parse_logical_line(line: &str) -> ParsedPamLine {
    let (first, rest) = split_field(line);
    if first == "@include" {
        let (target, _) = split_field(rest);
        return ParsedPamLine::AtInclude {
            target: target.to_owned(),
        };
    }
    let skip_if_missing = first.starts_with('-');
    let module_type = first.trim_start_matches('-').to_ascii_lowercase();
    let broken = |reason: &str| ParsedPamLine::Broken {
        module_type: module_type.clone(),
        reason: reason.to_owned(),
    };
    if !["auth", "account", "password", "session"].contains(&module_type.as_str()) {
        return broken("unknown module type");
    }
    let rest = rest.trim_start();
    let (control_text, bracketed, rest) = if let Some(inner) = rest.strip_prefix('[') {
        match inner.find(']') {
            Some(end) => (&inner[..end], true, &inner[end + 1..]),
            None => return broken("control bracket is not closed"),
        }
    } else {
        let (word, rest) = split_field(rest);
        (word, false, rest)
    };
    if control_text.is_empty() && !bracketed {
        return broken("no control field");
    }
    let (path, rest) = split_field(rest);
    if !bracketed {
        let lowered = control_text.to_ascii_lowercase();
        if lowered == "include" || lowered == "substack" {
            if path.is_empty() {
                return broken("include without a file name");
            }
            return ParsedPamLine::Include {
                module_type,
                target: path.to_owned(),
                substack: lowered == "substack",
            };
        }
    }
    let control = if bracketed {
        PamControl::bracketed(control_text)
    } else {
        match PamControl::keyword(control_text) {
            Some(control) => control,
            // Linux-PAM reads an unknown word as a bracket list without the
            // brackets, which gives `bad` for every code it does not name.
            None => PamControl::bracketed(control_text),
        }
    };
    if path.is_empty() {
        return broken("no module named");
    }
    ParsedPamLine::Module {
        module_type,
        skip_if_missing,
        control,
        path: path.to_owned(),
        arguments: split_arguments(rest),
    }
}

/// The first white-space separated field, and the rest.
fn split_field(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (&text[..end], &text[end..])
}

/// Module arguments as libpam's `_pam_mkargv` splits them.
fn split_arguments(text: &str) -> Vec<String> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut in_brackets = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            '\\' if in_brackets && chars.peek() == Some(&']') => {
                current.push(']');
                chars.next();
            }
            ']' if in_brackets => in_brackets = false,
            c if c.is_whitespace() && !in_brackets => {
                if !current.is_empty() {
                    arguments.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        arguments.push(current);
    }
    arguments
}

/// Reads a file by absolute path: `Ok(None)` when it does not exist, `Err`
/// with the reason when it exists but cannot be read.
pub type PamFileLoader<'a> = dyn FnMut(&str) -> Result<Option<String>, String> + 'a;

/// Builds the password stack that starts at `root` (an absolute path),
/// following `include`, `substack` and `@include` as libpam does.
pub fn load_password_stack(root: &str, load: &mut PamFileLoader<'_>) -> PamStack {
    let mut stack = PamStack {
        service: None,
        root: root.to_owned(),
        entries: Vec::new(),
        files_read: Vec::new(),
        problems: Vec::new(),
    };
    match load(root) {
        Ok(Some(text)) => {
            stack.files_read.push(root.to_owned());
            add_password_lines(&mut stack, root, &text, 0, load);
        }
        Ok(None) => stack.problems.push(format!("{root} does not exist")),
        Err(error) => stack.problems.push(format!("cannot read {root}: {error}")),
    }
    stack
}

fn add_password_lines(
    stack: &mut PamStack,
    file: &str,
    text: &str,
    depth: usize,
    load: &mut PamFileLoader<'_>,
) {
    for line in parse_pam_file(text) {
        let entry = |kind: PamEntryKind, control: PamControl, skip_if_missing: bool| PamEntry {
            file: file.to_owned(),
            line: line.line,
            text: line.text.clone(),
            kind,
            control,
            skip_if_missing,
            module_installed: None,
        };
        match &line.parsed {
            ParsedPamLine::Module {
                module_type,
                skip_if_missing,
                control,
                path,
                arguments,
            } if module_type == "password" => stack.entries.push(entry(
                PamEntryKind::Module {
                    path: path.clone(),
                    arguments: arguments.clone(),
                },
                control.clone(),
                *skip_if_missing,
            )),
            ParsedPamLine::Broken {
                module_type,
                reason,
            } if module_type == "password" => stack.entries.push(entry(
                PamEntryKind::MustFail {
                    reason: reason.clone(),
                },
                PamControl::must_fail(&line.text),
                false,
            )),
            ParsedPamLine::Include {
                module_type,
                target,
                substack,
            } if module_type == "password" => {
                if *substack {
                    stack.entries.push(entry(
                        PamEntryKind::Substack {
                            target: target.clone(),
                        },
                        PamControl::must_fail("substack"),
                        false,
                    ));
                }
                include(stack, file, line.line, target, depth, load);
            }
            ParsedPamLine::AtInclude { target } => {
                include(stack, file, line.line, target, depth, load);
            }
            _ => {}
        }
    }
}

fn include(
    stack: &mut PamStack,
    from: &str,
    line: usize,
    target: &str,
    depth: usize,
    load: &mut PamFileLoader<'_>,
) {
    let at = format!("{from} line {line}");
    if depth + 1 >= PAM_MAX_INCLUDE_DEPTH {
        stack.problems.push(format!(
            "{at}: includes nest deeper than {PAM_MAX_INCLUDE_DEPTH} levels (libpam refuses the stack)"
        ));
        return;
    }
    if stack.files_read.len() >= PAM_MAX_FILES_PER_STACK {
        stack.problems.push(format!(
            "{at}: the stack pulls in more than {PAM_MAX_FILES_PER_STACK} files"
        ));
        return;
    }
    let candidates: Vec<String> = if target.starts_with('/') {
        vec![target.to_owned()]
    } else {
        PAM_CONFIG_DIRS
            .iter()
            .map(|dir| format!("{dir}/{target}"))
            .collect()
    };
    for path in &candidates {
        match load(path) {
            Ok(Some(text)) => {
                stack.files_read.push(path.clone());
                add_password_lines(stack, path, &text, depth + 1, load);
                return;
            }
            Ok(None) => continue,
            Err(error) => {
                stack
                    .problems
                    .push(format!("{at}: cannot read {path}: {error}"));
                return;
            }
        }
    }
    stack.problems.push(format!(
        "{at}: includes {target}, which does not exist (libpam then fails the stack)"
    ));
}

/// Why the entry at `index` might not run on a password change, or `None`
/// when every path through the stack reaches it: an earlier entry whose
/// control can end the stack on success (`done`, as `sufficient` does) or
/// jump past it. Jumps count entries of the flattened stack, as libpam's
/// dispatcher does; a jump inside a substack is treated as if it could leave
/// it, which can only make this answer more cautious.
pub fn why_entry_may_be_skipped(entries: &[PamEntry], index: usize) -> Option<String> {
    entries
        .iter()
        .take(index)
        .enumerate()
        .find_map(|(at, earlier)| {
            earlier
                .control
                .possible_actions()
                .find_map(|(code, action)| match action {
                    PamAction::Done => Some(format!(
                        "{} ({}) can end the stack before it on {code}",
                        earlier.location(),
                        earlier.control.text
                    )),
                    PamAction::Jump(n) if at + n as usize >= index => Some(format!(
                        "{} ({}) can jump over it on {code}",
                        earlier.location(),
                        earlier.control.text
                    )),
                    _ => None,
                })
        })
}
