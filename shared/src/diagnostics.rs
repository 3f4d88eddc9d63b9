//! Turning TOML deserialisation errors into diagnostics that name the key
//! path, line and column, all of them at once.
//!
//! Policy and config files are read with `toml-span`, whose table helper keeps
//! going after an error and collects every one. This module maps each error's
//! byte span back to the dotted key path it sits under, so an operator reads
//! `line 12, column 20: rules.screen_lock.max_idle_seconds: …` rather than
//! "invalid type".

use std::fmt;

use toml_span::{DeserError, ErrorKind, Span, Value};

/// One problem found in a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted path of the key at fault, e.g. `rules.usb_storage.allow[1]`;
    /// empty for the document itself.
    pub key_path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: ", self.line, self.column)?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one document, in the order they appear in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    /// One line per problem in the form editors and terminals jump to:
    /// `FILE:LINE:COLUMN: key.path: message`.
    pub fn render_for_file(&self, file: &str) -> String {
        self.0
            .iter()
            .map(|d| {
                let key = if d.key_path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", d.key_path)
                };
                format!("{file}:{}:{}: {key}{}", d.line, d.column, d.message)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A file's bytes as text, or where they stop being UTF-8: the line and
/// column of the first bad byte, so an operator who pasted from a Latin-1
/// editor is sent to the place rather than told "stream did not contain
/// valid UTF-8".
pub fn utf8_text(bytes: Vec<u8>) -> Result<String, Diagnostics> {
    String::from_utf8(bytes).map_err(|err| {
        let bytes = err.as_bytes();
        let valid_up_to = err.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(bytes.get(..valid_up_to).unwrap_or_default());
        let (line, column) = line_and_column(&before, before.len());
        let byte = bytes.get(valid_up_to).copied().unwrap_or_default();
        Diagnostics(vec![Diagnostic {
            key_path: String::new(),
            line,
            column,
            message: format!("not UTF-8 text (byte 0x{byte:02X}); save the file as UTF-8"),
        }])
    })
}

/// Every problem of a file, headed by what the file is: `config file PATH
/// has 2 problems:` then one `PATH:LINE:COLUMN: key: message` line each.
pub fn render_file_problems(
    what: &str,
    path: &std::path::Path,
    diagnostics: &Diagnostics,
) -> String {
    let count = diagnostics.0.len();
    format!(
        "{what} file {} has {count} problem{}:\n{}",
        path.display(),
        if count == 1 { "" } else { "s" },
        diagnostics.render_for_file(&path.display().to_string())
    )
}

/// Parses `text` and deserialises it as `T`, collecting every error.
pub fn parse_toml<T>(text: &str) -> Result<T, Diagnostics>
where
    T: for<'de> toml_span::Deserialize<'de>,
{
    let mut root = match toml_span::parse(text) {
        Ok(root) => root,
        Err(err) => {
            // A syntax error stops the parser: there is only the one.
            let (line, column) = match err.line_info {
                Some((line, column)) => (line + 1, column + 1),
                None => line_and_column(text, err.span.start),
            };
            return Err(Diagnostics(vec![Diagnostic {
                key_path: String::new(),
                line,
                column,
                message: format!("not valid TOML: {err}"),
            }]));
        }
    };
    let index = KeyIndex::build(text);
    T::deserialize(&mut root).map_err(|errors| diagnostics_from(text, &index, errors))
}

fn diagnostics_from(text: &str, index: &KeyIndex, errors: DeserError) -> Diagnostics {
    let mut out = Vec::new();
    for error in errors.errors {
        // The error's own Display says what was wanted and found; its kind's
        // Display alone is terse ("wanted").
        let described = error.to_string();
        match error.kind {
            ErrorKind::UnexpectedKeys { keys, expected } => {
                for (name, span) in keys {
                    out.push(diagnostic(
                        text,
                        index.path_at(span),
                        span,
                        format!(
                            "unknown key `{name}`; expected one of: {}",
                            expected.join(", ")
                        ),
                    ));
                }
            }
            ErrorKind::MissingField(field) => {
                let table = index.path_at(error.span);
                let path = join_path(&table, field);
                out.push(diagnostic(
                    text,
                    path,
                    error.span,
                    "missing required key".into(),
                ));
            }
            ErrorKind::Custom(message) => {
                out.push(diagnostic(
                    text,
                    index.path_at(error.span),
                    error.span,
                    message.into(),
                ));
            }
            _ => {
                out.push(diagnostic(
                    text,
                    index.path_at(error.span),
                    error.span,
                    described,
                ));
            }
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    Diagnostics(out)
}

fn diagnostic(text: &str, key_path: String, span: Span, message: String) -> Diagnostic {
    let (line, column) = line_and_column(text, span.start);
    Diagnostic {
        key_path,
        line,
        column,
        message,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// A custom error at a value's span, for `Deserialize` impls.
pub fn invalid(span: Span, message: impl Into<String>) -> toml_span::Error {
    toml_span::Error {
        kind: ErrorKind::Custom(message.into().into()),
        span,
        line_info: None,
    }
}

fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// Every key and value span in a document, with its dotted path, so an
/// error's span can be named.
struct KeyIndex {
    entries: Vec<(String, Span)>,
}

impl KeyIndex {
    fn build(text: &str) -> Self {
        let mut entries = Vec::new();
        if let Ok(root) = toml_span::parse(text) {
            collect(&root, String::new(), &mut entries);
        }
        Self { entries }
    }

    /// The deepest path whose key or value span contains `span`.
    fn path_at(&self, span: Span) -> String {
        self.entries
            .iter()
            .filter(|(_, s)| s.start <= span.start && span.end <= s.end.max(s.start + 1))
            .max_by_key(|(path, s)| (path_depth(path), std::cmp::Reverse(s.end - s.start)))
            .map(|(path, _)| path.clone())
            .unwrap_or_default()
    }
}

fn path_depth(path: &str) -> usize {
    path.matches(['.', '[']).count() + usize::from(!path.is_empty())
}

fn collect(value: &Value<'_>, path: String, out: &mut Vec<(String, Span)>) {
    if let Some(table) = value.as_table() {
        for (key, child) in table {
            let child_path = join_path(&path, &key.name);
            out.push((child_path.clone(), key.span));
            out.push((child_path.clone(), child.span));
            collect(child, child_path, out);
        }
    } else if let Some(items) = value.as_array() {
        for (i, child) in items.iter().enumerate() {
            let child_path = format!("{path}[{i}]");
            out.push((child_path.clone(), child.span));
            collect(child, child_path, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_that_is_not_utf8_is_placed_by_line_and_column() {
        let errors = utf8_text(b"listen = \"a\"\npublic_url = \"caf\xe9\"\n".to_vec()).unwrap_err();
        assert_eq!(
            errors.render_for_file("c.toml"),
            "c.toml:2:18: not UTF-8 text (byte 0xE9); save the file as UTF-8"
        );
        assert_eq!(utf8_text("café".into()).unwrap(), "café");
    }
}
